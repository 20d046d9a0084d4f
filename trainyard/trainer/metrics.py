"""Classification metrics, all derived from one confusion matrix plus top-5 hits."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class MetricAccumulator:
    num_classes: int
    loss_sum: float = 0.0
    count: int = 0
    top5_hits: int = 0
    confusion: torch.Tensor = field(init=False)  # [true, predicted]

    def __post_init__(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss_sum: float) -> None:
        """`loss_sum` is the summed (not mean) loss of the batch."""
        logits, targets = logits.detach().float().cpu(), targets.cpu()
        pred = logits.argmax(dim=1)
        idx = targets * self.num_classes + pred
        self.confusion += torch.bincount(idx, minlength=self.num_classes**2).view_as(self.confusion)
        if self.num_classes >= 5:
            top5 = logits.topk(5, dim=1).indices
            self.top5_hits += int((top5 == targets[:, None]).any(dim=1).sum())
        self.loss_sum += loss_sum
        self.count += len(targets)

    def compute(self) -> dict[str, float]:
        cm = self.confusion.double()
        n = max(1, self.count)
        tp = cm.diag()
        support = cm.sum(dim=1)
        predicted = cm.sum(dim=0)
        precision = tp / predicted.clamp(min=1)
        recall = tp / support.clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        present = support > 0  # macro over the classes that occur in this split
        out = {
            "loss": self.loss_sum / n,
            "accuracy": float(tp.sum() / n),
            "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        }
        if self.num_classes >= 5:
            out["top5"] = self.top5_hits / n
        return out

    def per_class_accuracy(self, classes: list[str]) -> dict[str, float | None]:
        cm = self.confusion
        support = cm.sum(dim=1)
        return {
            c: (float(cm[i, i] / support[i]) if support[i] > 0 else None)
            for i, c in enumerate(classes)
        }
