import io
import json

import torch

from trainyard.trainer.events import EVENT_PREFIX, EventWriter, format_event, parse_event
from trainyard.trainer.metrics import MetricAccumulator


def test_metrics_from_a_known_confusion() -> None:
    acc = MetricAccumulator(num_classes=2)
    # targets 0,0,1,1 ; predictions 0,1,1,1
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])
    acc.update(logits, torch.tensor([0, 0, 1, 1]), loss_sum=4.0)
    m = acc.compute()
    assert m["accuracy"] == 0.75
    assert m["loss"] == 1.0
    assert acc.confusion.tolist() == [[1, 1], [0, 2]]
    # class 0: p=1, r=.5, f1=2/3 ; class 1: p=2/3, r=1, f1=.8
    assert abs(m["f1_macro"] - (2 / 3 + 0.8) / 2) < 1e-9
    assert "top5" not in m
    assert acc.per_class_accuracy(["a", "b"]) == {"a": 0.5, "b": 1.0}


def test_top5_with_many_classes() -> None:
    acc = MetricAccumulator(num_classes=6)
    logits = torch.tensor([[0.0, 1, 2, 3, 4, 5], [5.0, 4, 3, 2, 1, 0]])
    acc.update(logits, torch.tensor([0, 0]), loss_sum=0.0)  # first: rank 6, second: rank 1
    assert acc.compute()["top5"] == 0.5


def test_events_round_trip_and_ignore_plain_lines() -> None:
    line = format_event("metrics", epoch=1, values={"accuracy": 0.5})
    assert line.startswith(EVENT_PREFIX)
    ev = parse_event(line + "\n")
    assert ev is not None and ev["event"] == "metrics" and ev["values"] == {"accuracy": 0.5}
    assert parse_event("epoch 1/3 done") is None
    assert parse_event(EVENT_PREFIX + "{broken") is None


def test_non_finite_numbers_become_null() -> None:
    buf = io.StringIO()
    EventWriter(buf).emit("progress", loss=float("nan"), nested={"x": float("inf")})
    payload = json.loads(buf.getvalue()[len(EVENT_PREFIX) :])
    assert payload["loss"] is None and payload["nested"]["x"] is None
