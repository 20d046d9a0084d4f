"""Saved augmentation presets: a project's named parameter sets.

Each is a trainer preset (`base`: none, light, standard, strong) plus overrides of its
parameters, validated by the trainer's `resolve_params`: the same pair a config's
`augmentation` section holds, so a config that uses one is written with `preset: base` and
`params: overrides` and stays a standalone `TrainConfig` (`config_section`).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from trainyard.platform.errors import PlatformError
from trainyard.platform.models import AugmentationPreset
from trainyard.platform.named_items import (
    add_item,
    delete_item,
    get_item,
    list_items,
    new_item_name,
)
from trainyard.trainer.augment import PRESETS, AugParams, resolve_params

WHAT = "saved augmentation preset"


def save_aug_preset(
    session: Session, project_id: int, name: str, base: str, params: dict[str, Any] | None
) -> AugmentationPreset:
    """Validate `params` over `base` and store them under `name`. The stored overrides are
    the validated values (`"0.5"` is stored as 0.5)."""
    name = new_item_name(session, AugmentationPreset, project_id, name, WHAT, PRESETS)
    base = (base or "").strip()
    if base not in PRESETS:
        raise PlatformError(f"base: {PRESETS.unknown_message(base)}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise PlatformError("augmentation.params: expected a mapping such as {hflip: 0.5}")
    try:
        resolved = resolve_params(base, params)
    except ValueError as e:
        raise PlatformError(str(e)) from None
    overrides = {k: getattr(resolved, k) for k in params}
    row = AugmentationPreset(project_id=project_id, name=name, base=base, params=overrides)
    return add_item(session, row, WHAT)


def list_aug_presets(session: Session, project_id: int) -> list[AugmentationPreset]:
    return list_items(session, AugmentationPreset, project_id)


def get_aug_preset(session: Session, project_id: int, name: str) -> AugmentationPreset:
    return get_item(session, AugmentationPreset, project_id, name, WHAT)


def delete_aug_preset(session: Session, project_id: int, name: str) -> AugmentationPreset:
    """Configs that use the preset keep working: they hold a copy of its parameters."""
    return delete_item(session, AugmentationPreset, project_id, name, WHAT)


def config_section(preset: AugmentationPreset) -> dict[str, Any]:
    """The `augmentation` section of a config that uses `preset`."""
    return {"preset": preset.base, "params": dict(preset.params)}


def resolved_params(preset: AugmentationPreset) -> AugParams:
    """Every parameter, the overrides applied (what training will use)."""
    return resolve_params(preset.base, preset.params)
