"""Loss registry: each entry builds a `(logits, targets) -> scalar` module from `LossConfig`."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from trainyard.trainer.config import LossConfig
from trainyard.trainer.registry import Registry

LOSSES: Registry[Callable[[LossConfig], torch.nn.Module]] = Registry("loss")


class FocalLoss(torch.nn.Module):
    """Focal loss (Lin et al. 2017): down-weights easy examples; helps with class imbalance."""

    def __init__(self, gamma: float, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing)
        pt = torch.exp(-ce)  # probability of the true class (smoothed)
        return ((1 - pt) ** self.gamma * ce).mean()


@LOSSES.register("cross_entropy", "Cross-entropy, with optional label smoothing.")
def _cross_entropy(c: LossConfig) -> torch.nn.Module:
    return torch.nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)


@LOSSES.register("focal", "Focal loss (gamma = focal_gamma), for imbalanced classes.")
def _focal(c: LossConfig) -> torch.nn.Module:
    return FocalLoss(c.focal_gamma, c.label_smoothing)


def create_loss(cfg: LossConfig) -> torch.nn.Module:
    return LOSSES.get(cfg.name)(cfg)
