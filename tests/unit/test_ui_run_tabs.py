"""The Metrics, Model testing, Cluster and TensorBoard tabs, driven through the app's public API
with gradio_client against a real launched app (SQLite, no Ray).

A fast fixture builds run #1 from parts (an untrained checkpoint, metric events, a confusion
matrix, TensorBoard scalars); the tests marked slow also train a real tiny model on the digits
once per module and check what only a trained model shows.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.ui_server import serve_app
from trainyard.platform import projects, runlogs, runs
from trainyard.platform.ray_cluster import free_port
from trainyard.platform.service import Platform
from trainyard.platform.status import RunStatus
from trainyard.trainer.checkpoint import save_checkpoint
from trainyard.trainer.events import format_event
from trainyard.trainer.models import create_model
from trainyard.ui.cluster_tab import SharedReading, summary_markdown
from trainyard.ui.metrics_tab import metric_frame
from trainyard.ui.tensorboard_tab import tensorboard_url
from trainyard.ui.testing_tab import PredictorCache, checkpoint_names, spread_sample

REPO = Path(__file__).resolve().parents[2]
CLASSES = [str(i) for i in range(10)]


@dataclasses.dataclass
class App:
    url: str
    client: Client
    platform: Platform
    project_id: int
    digits: Path
    runs_dir: Path


def _finished_run(plat: Platform, project_id: int, data_root: Path, name: str) -> int:
    config = {"data": {"root": str(data_root), "image_size": 32}, "loop": {"epochs": 2}}
    with plat.session() as s:
        run = runs.submit_run(s, project_id, config, name=name)
        for st in (RunStatus.STARTING, RunStatus.RUNNING):
            runs.set_status(s, run, st)
        run.run_dir = str(plat.settings.storage_dir / "runs" / f"{run.id:06d}")
        return run.id  # type: ignore[return-value]


def _ingest(plat: Platform, run_id: int, lines: list[str], end: RunStatus | None) -> None:
    with plat.session() as s:
        run = runs.get_run(s, run_id)
        runlogs.ingest_lines(s, run, lines)
        if end is not None:
            runs.set_status(s, run, end)


def _metric_lines(accuracies: list[float]) -> list[str]:
    lines = ["starting (a human line, not an event)"]
    for epoch, acc in enumerate(accuracies, start=1):
        lines.append(
            format_event(
                "metrics",
                epoch=epoch,
                split="train",
                values={"loss": 2.0 / epoch, "accuracy": acc - 0.1},
                lr=0.001 / epoch,
            )
        )
        lines.append(
            format_event(
                "metrics",
                epoch=epoch,
                split="val",
                values={"loss": 2.2 / epoch, "accuracy": acc, "f1_macro": acc - 0.05},
            )
        )
    return lines


def _fake_run_folder(run_dir: Path) -> None:
    """best/ and last/ checkpoints (untrained), a val confusion matrix, TensorBoard scalars."""
    from torch.utils.tensorboard import SummaryWriter

    m = create_model("resnet-tiny", CLASSES, image_size=32)
    # Each class: 5 right, 1 taken for the next class.
    confusion = [[5 if j == i else int(j == (i + 1) % 10) for j in range(10)] for i in range(10)]
    info = {
        "epoch": 2,
        "classes": CLASSES,
        "confusion": confusion,
        "per_class_accuracy": {c: 5 / 6 for c in CLASSES},
    }
    for name in ("best", "last"):
        save_checkpoint(run_dir / "checkpoints" / name, m.model, m.processor, info)
    with SummaryWriter(log_dir=str(run_dir / "tensorboard")) as tb:
        for epoch in (1, 2):
            tb.add_scalar("val/accuracy", 0.5 * epoch, epoch)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> Iterator[App]:
    made: dict[str, int] = {}

    def two_finished_runs(plat: Platform) -> None:
        with plat.session() as s:
            project_id: int = projects.create_project(s, "digits").id  # type: ignore[assignment]
        first = _finished_run(plat, project_id, digits_root, "fake one")
        _fake_run_folder(plat.settings.storage_dir / "runs" / f"{first:06d}")
        _ingest(plat, first, _metric_lines([0.5, 0.7]), RunStatus.SUCCEEDED)
        second = _finished_run(plat, project_id, digits_root, "fake two")
        _ingest(plat, second, _metric_lines([0.6, 0.8, 0.9]), RunStatus.SUCCEEDED)
        assert (first, second) == (1, 2)
        made["project_id"] = project_id

    base = tmp_path_factory.mktemp("ui")
    with serve_app(base, digits_root.parent, prepare=two_finished_runs) as served:
        yield App(
            served.url,
            served.client,
            served.platform,
            made["project_id"],
            digits_root,
            served.settings.storage_dir / "runs",
        )


@pytest.fixture(scope="module")
def trained(app: App) -> int:
    """A real run: the trainer CLI, 2 epochs of resnet-tiny on the digits, ingested like the
    platform's log follower would. Returns its run id."""
    run_id = _finished_run(app.platform, app.project_id, app.digits, "trained")
    config = {
        "data": {"root": str(app.digits), "image_size": 32, "batch_size": 64, "workers": 1},
        "augmentation": {"preset": "none"},
        "model": {"name": "resnet-tiny"},
        "optimizer": {"lr": 0.003},
        "schedule": {"name": "onecycle"},
        "loop": {"epochs": 2, "threads": 1, "progress_interval_s": 5},
    }
    cfg = app.runs_dir.parent / "trained.yaml"
    cfg.write_text(yaml.safe_dump(config))
    run_dir = app.runs_dir / f"{run_id:06d}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainyard.trainer",
            "--config",
            str(cfg),
            "--run-dir",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _ingest(app.platform, run_id, proc.stdout.splitlines(), RunStatus.SUCCEEDED)
    return run_id


def _rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


# ---- Metrics -------------------------------------------------------------------------------


def test_metric_series_has_every_epoch_and_split(app: App) -> None:
    rows = _rows(app.client.predict(1, api_name="/metric_series"))
    got = {(r["epoch"], r["split"], r["name"]) for r in rows}
    assert (2, "val", "accuracy") in got and (1, "train", "lr") in got
    val_acc = [r["value"] for r in rows if (r["split"], r["name"]) == ("val", "accuracy")]
    assert val_acc == [0.5, 0.7]


def test_metric_series_of_an_unknown_run_says_so(app: App) -> None:
    with pytest.raises(AppError, match="no run with id 999"):
        app.client.predict(999, api_name="/metric_series")


def test_compare_runs_puts_several_runs_on_one_chart(app: App) -> None:
    rows = _rows(app.client.predict([1, 2], "val/accuracy", api_name="/compare_runs"))
    by_run: dict[str, list[float]] = {}
    for r in rows:
        by_run.setdefault(r["run"], []).append(r["value"])
    assert by_run == {"#1 fake one": [0.5, 0.7], "#2 fake two": [0.6, 0.8, 0.9]}
    with pytest.raises(AppError, match="not in the list of choices"):
        app.client.predict([1], "val/nonsense", api_name="/compare_runs")


def test_confusion_matrix_of_the_best_checkpoint(app: App) -> None:
    table, per_class, note = app.client.predict(1, "val", api_name="/confusion_matrix")
    assert table["headers"] == ["true \\ predicted", *CLASSES]
    assert table["data"][0][:3] == ["0", 5, 1]  # true 0: 5 right, 1 taken for a 1
    assert "50 of 60 right" in note
    assert per_class is not None
    # No test results for this run: a note, not an error.
    _, _, note = app.client.predict(1, "test", api_name="/confusion_matrix")
    assert "no test results yet" in note


def test_the_live_view_notices_new_epochs_and_the_end(app: App) -> None:
    from trainyard.ui.common import UIContext
    from trainyard.ui.metrics_tab import metric_signature, run_summary

    ctx = UIContext(app.platform)
    run_id = _finished_run(app.platform, app.project_id, app.digits, "live")
    lines = _metric_lines([0.4, 0.6])
    _ingest(app.platform, run_id, lines[:3], None)  # still running, epoch 1 done
    before = metric_signature(ctx, run_id)
    assert metric_signature(ctx, run_id) == before  # nothing new: the timer redraws nothing
    with app.platform.session() as s:
        run = runs.get_run(s, run_id)
        runlogs.ingest_lines(s, run, lines[3:])
    assert metric_signature(ctx, run_id) != before
    with app.platform.session() as s:
        runs.set_status(s, runs.get_run(s, run_id), RunStatus.SUCCEEDED)
        run = runs.get_run(s, run_id)
        summary = run_summary(run, metric_frame(runlogs.metric_series(s, run_id)))
    assert "`SUCCEEDED`" in summary and "Epoch 2: train accuracy 0.5000" in summary


def test_metric_frame_keeps_the_last_report_of_an_epoch() -> None:
    from trainyard.platform.models import Metric

    rows = [
        Metric(run_id=1, epoch=1, split="val", name="accuracy", value=0.1),
        Metric(run_id=1, epoch=1, split="val", name="accuracy", value=0.2),  # resumed attempt
        Metric(run_id=1, epoch=None, split="val", name="accuracy", value=0.9),
    ]
    assert metric_frame(rows)["value"].tolist() == [0.2]


# ---- Model testing -------------------------------------------------------------------------


def test_checkpoints_are_listed_best_first(app: App, tmp_path: Path) -> None:
    update = app.client.predict(1, api_name="/list_checkpoints")
    assert update["value"] == "best"
    assert [c[1] for c in update["choices"]] == ["best", "last"]
    for name in ("epoch-2", "epoch-10", "last", ".best.tmp"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / "config.json").write_text("{}")
    assert checkpoint_names(str(tmp_path)) == ["last", "epoch-10", "epoch-2"]


def test_predict_returns_top_k_for_one_or_many_images(app: App) -> None:
    pngs = sorted((app.digits / "test" / "3").glob("*.png"))[:2]
    label, table = app.client.predict(1, "best", [handle_file(pngs[0])], 3, api_name="/predict")
    assert len(label["confidences"]) == 3
    assert _rows(table)[0]["file"] == pngs[0].name
    label, table = app.client.predict(
        1, "last", [handle_file(p) for p in pngs], 2, api_name="/predict"
    )
    assert not label  # the label view is for one image; many go in the table
    assert [r["file"] for r in _rows(table)] == [p.name for p in pngs]


def test_predict_refuses_what_is_not_an_image_and_keeps_serving(app: App, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    fake = tmp_path / "fake.png"
    fake.write_text("not a png at all")
    with pytest.raises(AppError, match="Invalid file type"):
        app.client.predict(1, "best", [handle_file(notes)], 3, api_name="/predict")
    with pytest.raises(AppError, match=r"^fake\.png: not an image trainyard can read"):
        app.client.predict(1, "best", [handle_file(fake)], 3, api_name="/predict")
    with pytest.raises(AppError, match=r"checkpoint 'epoch-7' not found; this run has: best"):
        app.client.predict(1, "epoch-7", [handle_file(fake)], 3, api_name="/predict")
    png = next((app.digits / "test" / "0").glob("*.png"))
    label, _ = app.client.predict(1, "best", [handle_file(png)], 1, api_name="/predict")
    assert len(label["confidences"]) == 1


def test_predict_refuses_a_50_megapixel_image(app: App, tmp_path: Path) -> None:
    big = tmp_path / "huge.png"
    Image.new("1", (7100, 7100)).save(big)  # 50.4 MP, a few KB on disk
    with pytest.raises(AppError, match=r"huge\.png: 7100x7100 is 50 megapixels; the limit is 50"):
        app.client.predict(1, "best", [handle_file(big)], 3, api_name="/predict")
    assert _get(app.url)[0] == 200


def test_predictor_cache_is_bounded_and_follows_rewrites(tmp_path: Path) -> None:
    m = create_model("resnet-tiny", ["a", "b"], image_size=32)
    folders = [save_checkpoint(tmp_path / n, m.model, m.processor, {}) for n in ("x", "y")]
    cache = PredictorCache(max_size=1)
    first = cache.get(folders[0])
    assert cache.get(folders[0]) is first
    cache.get(folders[1])
    assert len(cache) == 1 and cache.get(folders[0]) is not first
    again = cache.get(folders[0])
    save_checkpoint(folders[0], m.model, m.processor, {"epoch": 2})  # a newer best/
    os.utime(folders[0] / "config.json", ns=(time.time_ns() + 10**9,) * 2)
    assert cache.get(folders[0]) is not again


def test_spread_sample_reaches_every_class() -> None:
    assert spread_sample(5, 10) == [0, 1, 2, 3, 4]
    picked = spread_sample(1000, 10)
    assert len(picked) == 10 and picked[0] == 0 and picked[-1] >= 900


# ---- Cluster -------------------------------------------------------------------------------


def test_cluster_without_ray_says_so(app: App) -> None:
    summary, nodes, gpu_note, gpus, active, queue = app.client.predict(api_name="/cluster_status")
    assert "Ray is not connected" in summary
    assert "queue: **0** run(s)" in summary
    assert nodes["data"] == [] and active["data"] == [] and queue["data"] == []
    if not gpus["data"]:
        assert gpu_note == "no GPUs visible to NVML on this host"


def test_an_unreachable_dashboard_is_a_message_not_a_traceback() -> None:
    from trainyard.platform.ray_cluster import cluster_resources

    url = f"http://127.0.0.1:{free_port()}"
    calls = []

    def fetch() -> Any:
        calls.append(1)
        return cluster_resources(url, timeout_s=2)

    reading = SharedReading(fetch, ttl_s=60)
    res = reading.get()
    assert isinstance(res, str) and res
    assert reading.get() == res and len(calls) == 1  # asked once per period, not per browser
    text = summary_markdown(url, res, busy=0, queued=3, threads=2)
    assert f"The Ray dashboard at {url} is not answering" in text
    assert "queue: **3** run(s)" in text


# ---- TensorBoard ---------------------------------------------------------------------------


def test_tensorboard_is_mounted_and_lists_the_run(app: App) -> None:
    status, page = _get(app.url + "tensorboard/")
    assert status == 200 and "tb-relative-root" in page
    assert _get(app.url + "tensorboard")[0] == 200  # redirected to the trailing slash
    deadline = time.monotonic() + 30
    while "000001/tensorboard" not in _get(app.url + "tensorboard/data/runs")[1]:
        assert time.monotonic() < deadline, "TensorBoard never listed run 000001"
        time.sleep(0.5)
    status, body = _get(
        app.url + "tensorboard/data/plugin/scalars/scalars?run=000001/tensorboard&tag=val/accuracy"
    )
    assert status == 200 and "0.5" in body


def test_tensorboard_asks_for_the_app_login_when_there_is_one(app: App) -> None:
    import http.cookiejar
    import urllib.parse

    from trainyard.ui.app import launch
    from trainyard.ui.common import UIContext

    port = free_port()
    demo = launch(UIContext(app.platform), port=port, auth=("ann", "secret"), block=False)
    base = f"http://127.0.0.1:{port}/"
    try:
        status, body = _get(base + "tensorboard/data/runs")
        assert status == 401 and "sign in to trainyard" in body
        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        form = urllib.parse.urlencode({"username": "ann", "password": "secret"}).encode()
        browser.open(base + "login", form, timeout=30).close()
        with browser.open(base + "tensorboard/data/runs", timeout=30) as resp:
            assert resp.status == 200 and resp.read().startswith(b"[")
    finally:
        demo.close()


def test_tensorboard_view_filters_the_chosen_runs(app: App) -> None:
    html = app.client.predict([1, 2], api_name="/tensorboard_view")
    assert 'src="tensorboard/?runFilter=%5E%28000001%7C000002%29%2F#timeseries"' in html
    assert tensorboard_url([]) == "tensorboard/#timeseries"


# ---- with a trained model ------------------------------------------------------------------


@pytest.mark.slow
def test_a_trained_model_names_the_digit(app: App, trained: int) -> None:
    rows = _rows(app.client.predict(trained, api_name="/metric_series"))
    assert {r["epoch"] for r in rows if r["split"] == "val"} == {1, 2}
    right = 0
    for digit in ("0", "3", "6"):
        png = sorted((app.digits / "test" / digit).glob("*.png"))[0]
        label, _ = app.client.predict(trained, "best", [handle_file(png)], 3, api_name="/predict")
        right += label["label"] == digit
    assert right >= 2
    table, _, note = app.client.predict(trained, "test", api_name="/confusion_matrix")
    assert len(table["data"]) == 10 and "test set" in note


@pytest.mark.slow
def test_validation_mistakes_are_shown_with_captions(app: App, trained: int) -> None:
    gallery, note = app.client.predict(trained, "best", 100, api_name="/val_mistakes")
    assert "validation images wrong" in note and "checked 100 of 270" in note
    for item in gallery:
        assert item["caption"].startswith("true ") and ", predicted " in item["caption"]
    assert len(gallery) < 60  # a trained model gets most of them right


@pytest.mark.slow
def test_tensorboard_picks_up_a_new_run(app: App, trained: int) -> None:
    name = f"{trained:06d}/tensorboard"
    deadline = time.monotonic() + 40  # one reload interval and some
    while name not in _get(app.url + "tensorboard/data/runs")[1]:
        assert time.monotonic() < deadline, f"TensorBoard never listed {name}"
        time.sleep(1)
