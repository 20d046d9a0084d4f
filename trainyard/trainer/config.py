"""`TrainConfig`: the typed, validated description of one training run.

A config arrives as YAML or JSON (or a dict from the UI), optionally patched with
`key=value` overrides, and leaves as a frozen pydantic model. Every error names the field,
the bad value and what is allowed, in one line, so the CLI can print it and exit before any
training starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainyard.trainer.registry import Registry


class ConfigError(ValueError):
    """A config (or the data it points to) is unusable. The message is one line for the user."""


class _Section(BaseModel):
    # Unknown keys are typos, not extensions: refuse them so `lerning_rate` is not ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    root: str = Field(description="ImageFolder root holding train/, val/ and optional test/.")
    image_size: int | None = Field(
        default=None, ge=8, le=1024, description="Square side in pixels; None: the model's own."
    )
    batch_size: int = Field(default=64, ge=1, le=8192, description="Images per training step.")
    eval_batch_size: int | None = Field(
        default=None, ge=1, le=8192, description="Images per evaluation batch; None: 2x batch."
    )
    workers: int = Field(default=2, ge=0, le=64, description="Threads decoding images.")
    cache: Literal["memory", "disk", "none"] = Field(
        default="memory",
        description="memory: decode once per process; disk: also keep the decoded images on "
        "disk for later runs; none: decode every epoch (datasets larger than memory).",
    )
    cache_dir: str | None = Field(default=None, description="Where the disk cache lives.")
    on_bad_image: Literal["fail", "skip"] = Field(
        default="fail", description="fail: stop before training; skip: leave them out, report."
    )


class ModelConfig(_Section):
    name: str = Field(
        default="resnet-tiny",
        description="A preset name, a HuggingFace hub id, or a local save_pretrained folder.",
    )
    pretrained: bool = Field(default=True, description="Load hub/local weights when available.")


class AugmentationConfig(_Section):
    preset: str = Field(default="light", description="none, light, standard or strong.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the preset's parameters."
    )


class OptimizerConfig(_Section):
    name: str = Field(default="adamw", description="adamw, adam or sgd.")
    lr: float = Field(default=1e-3, gt=0.0, le=10.0, description="Peak learning rate.")
    weight_decay: float = Field(
        default=0.01, ge=0.0, le=1.0, description="Decoupled for AdamW; not on norms/biases."
    )
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="SGD only.")
    betas: tuple[float, float] = Field(default=(0.9, 0.999), description="Adam/AdamW betas.")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class ScheduleConfig(_Section):
    name: str = Field(default="cosine", description="constant, cosine, linear or onecycle.")
    warmup_epochs: float = Field(
        default=0.0, ge=0.0, le=1000.0, description="Linear warm-up length (fractions allowed)."
    )
    min_lr_ratio: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Final LR as a fraction of the peak."
    )


class LossConfig(_Section):
    name: str = Field(default="cross_entropy", description="cross_entropy or focal.")
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0, description="0 disables it.")
    focal_gamma: float = Field(default=2.0, ge=0.0, le=10.0, description="Focal loss only.")


class LoopConfig(_Section):
    epochs: int = Field(default=10, ge=1, le=100_000, description="Passes over train/.")
    grad_accum_steps: int = Field(
        default=1, ge=1, le=1024, description="Batches per optimizer step."
    )
    clip_grad_norm: float | None = Field(
        default=None, gt=0.0, description="Clip the gradient norm to this; None: no clipping."
    )
    mixed_precision: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto: bf16/fp16 on CUDA, fp32 on CPU."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when visible, else CPU."
    )
    early_stopping_patience: int | None = Field(
        default=None, ge=1, description="Stop after this many epochs without improvement."
    )
    monitor: Literal["accuracy", "loss", "f1_macro"] = Field(
        default="accuracy", description="Validation metric that picks the best checkpoint."
    )
    seed: int = Field(default=0, ge=0, description="Seeds weights, shuffling, augmentation.")
    threads: int | None = Field(
        default=None, ge=1, le=512, description="torch CPU threads (Ray sets 1 by default)."
    )
    log_every_steps: int = Field(default=50, ge=1, description="TensorBoard step scalars.")
    progress_interval_s: float = Field(default=2.0, ge=0.0, description="Progress line rate.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop early (smoke tests).")


class CheckpointConfig(_Section):
    save_every_epochs: int | None = Field(
        default=None, ge=1, description="Also keep epoch-N/ folders every N epochs."
    )
    save_best: bool = Field(default=True, description="Keep best/ by loop.monitor.")


class TrainConfig(_Section):
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @model_validator(mode="after")
    def _check_names(self) -> TrainConfig:
        # Registry names are checked here so a bad name fails at load time, naming the field.
        from trainyard.trainer import augment, losses, optim

        checks: list[tuple[str, str, Registry[Any]]] = [
            ("optimizer.name", self.optimizer.name, optim.OPTIMIZERS),
            ("schedule.name", self.schedule.name, optim.SCHEDULES),
            ("loss.name", self.loss.name, losses.LOSSES),
            ("augmentation.preset", self.augmentation.preset, augment.PRESETS),
        ]
        for field, value, registry in checks:
            if value not in registry:
                raise ValueError(f"{field}: {registry.unknown_message(value)}")
        augment.resolve_params(self.augmentation.preset, self.augmentation.params)
        if self.schedule.warmup_epochs >= self.loop.epochs and self.schedule.warmup_epochs > 0:
            raise ValueError(
                f"schedule.warmup_epochs: {self.schedule.warmup_epochs} must be less than "
                f"loop.epochs ({self.loop.epochs})"
            )
        return self

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> TrainConfig:
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(f"{source}: {format_validation_error(e)}") from None

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        raw = read_config_file(path)
        for item in overrides or []:
            apply_override(raw, item)
        return cls.from_dict(raw, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    text = p.read_text()
    try:
        raw = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        kind = "JSON" if p.suffix == ".json" else "YAML"
        raise ConfigError(f"{p}: not valid {kind}: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `dotted.key=value` override; the value is parsed as YAML (so 3, 1e-3, true)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. optimizer.lr=0.01")
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {part} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        node[parts[-1]] = value


def format_validation_error(e: ValidationError) -> str:
    """Pydantic's errors as one line: `field: message (got value)`, joined with '; '."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        got = err.get("input")
        shown = f" (got {got!r})" if err["type"] != "missing" and _is_scalar(got) else ""
        parts.append(f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}")
    return "; ".join(parts)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) or v is None
