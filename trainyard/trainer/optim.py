"""Optimizer and learning-rate schedule registries.

Schedules are per optimizer step (not per epoch) and include linear warm-up, so a run
resumed mid-way continues on exactly the same curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from trainyard.trainer.config import OptimizerConfig, ScheduleConfig
from trainyard.trainer.registry import Registry

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter], OptimizerConfig], torch.optim.Optimizer]
# A schedule maps (step, total_steps, warmup_steps, min_ratio) to a multiplier of the peak LR.
ScheduleFn = Callable[[int, int, int, float], float]

OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
SCHEDULES: Registry[ScheduleFn] = Registry("schedule")


@OPTIMIZERS.register("adamw", "AdamW: Adam with decoupled weight decay (a safe default).")
def _adamw(params: Iterable[torch.nn.Parameter], c: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)


@OPTIMIZERS.register("adam", "Adam with L2 weight decay.")
def _adam(params: Iterable[torch.nn.Parameter], c: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)


@OPTIMIZERS.register("sgd", "SGD with Nesterov momentum.")
def _sgd(params: Iterable[torch.nn.Parameter], c: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, nesterov=c.momentum > 0, weight_decay=c.weight_decay
    )


def _warm(step: int, warmup: int) -> float | None:
    return (step + 1) / warmup if step < warmup else None


@SCHEDULES.register("constant", "Constant after warm-up.")
def _constant(step: int, total: int, warmup: int, min_ratio: float) -> float:
    w = _warm(step, warmup)
    return 1.0 if w is None else w


@SCHEDULES.register("cosine", "Cosine decay to min_lr_ratio after warm-up.")
def _cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    w = _warm(step, warmup)
    if w is not None:
        return w
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("linear", "Linear decay to min_lr_ratio after warm-up.")
def _linear(step: int, total: int, warmup: int, min_ratio: float) -> float:
    w = _warm(step, warmup)
    if w is not None:
        return w
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return 1.0 - (1.0 - min_ratio) * t


@SCHEDULES.register("onecycle", "Linear ramp up for 25% of training (or the warm-up), then down.")
def _onecycle(step: int, total: int, warmup: int, min_ratio: float) -> float:
    up = warmup or max(1, total // 4)
    if step < up:
        return 0.1 + 0.9 * (step + 1) / up
    t = min(1.0, (step - up) / max(1, total - up))
    return max(min_ratio, 1.0 - t)


def create_optimizer(model: torch.nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    # No weight decay on norms and biases: decaying them only hurts (timm, nanoGPT do the same).
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return OPTIMIZERS.get(cfg.name)(groups, cfg)  # type: ignore[arg-type]


def create_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    fn = SCHEDULES.get(cfg.name)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: fn(step, total_steps, warmup, cfg.min_lr_ratio)
    )
