"""The project's saved models and augmentation presets as choices of the Configs form.

A stored config must stay a standalone `TrainConfig` (runs freeze it and the trainer runs it
alone), so a saved item is never referenced by name from a config: a saved model's choice
has its `ref` as value, which goes into `model.name` as it is; a saved preset's choice is
`SAVED_PREFIX + name`, which the form replaces, when picked, by `augmentation.preset = base`
and `augmentation.params = overrides`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr
from sqlmodel import Session

from trainyard.platform import aug_presets, model_entries
from trainyard.platform.models import AugmentationPreset, ModelEntry
from trainyard.trainer.augment import PRESETS
from trainyard.trainer.models import MODELS
from trainyard.ui.augment_tab import format_overrides
from trainyard.ui.common import UIContext, require_project

SAVED_PREFIX = "saved: "  # no built-in preset name holds a colon and a space
INFO = {
    "model_name": "Check one in the Models tab; models saved there are listed too.",
    "augmentation_preset": "Presets saved in the Augmentations tab are listed too; picking "
    "one writes its base preset here and its parameters into the overrides.",
}


def _with_saved(
    ctx: UIContext,
    project_id: Any,
    builtin: list[str],
    list_saved: Callable[[Session, int], Sequence[Any]],
    choice: Callable[[Any], tuple[str, str]],
) -> list[tuple[str, str]]:
    choices = [(name, name) for name in builtin]
    if project_id in (None, ""):
        return choices
    with ctx.platform.session() as s:
        return choices + [choice(row) for row in list_saved(s, int(project_id))]


def model_choices(ctx: UIContext, project_id: Any) -> list[tuple[str, str]]:
    def choice(e: ModelEntry) -> tuple[str, str]:
        return f"{e.name} (saved {e.kind}: {e.ref})", e.ref

    return _with_saved(ctx, project_id, MODELS.names(), model_entries.list_model_entries, choice)


def augmentation_choices(ctx: UIContext, project_id: Any) -> list[tuple[str, str]]:
    def choice(p: AugmentationPreset) -> tuple[str, str]:
        return f"{p.name} (saved: {p.base} + {format_overrides(p.params)})", SAVED_PREFIX + p.name

    return _with_saved(ctx, project_id, PRESETS.names(), aug_presets.list_aug_presets, choice)


def choice_updates(ctx: UIContext, project_id: Any) -> tuple[Any, Any]:
    """New choices for the model and augmentation dropdowns; their values stay."""
    return (
        gr.update(choices=model_choices(ctx, project_id)),
        gr.update(choices=augmentation_choices(ctx, project_id)),
    )


def saved_augmentation(ctx: UIContext, project_id: Any, value: Any) -> tuple[str, str, str] | None:
    """For a saved preset's choice: (base preset, overrides as YAML, a line naming it), what
    the form takes instead; None for any other value (a built-in preset, or a typo that the
    config's validation names)."""
    text = str(value or "")
    if not text.startswith(SAVED_PREFIX):
        return None
    pid = require_project(project_id)
    with ctx.platform.session() as s:
        row = aug_presets.get_aug_preset(s, pid, text.removeprefix(SAVED_PREFIX))
    section = aug_presets.config_section(row)
    params = format_overrides(section["params"])
    return section["preset"], params, f"Applied saved preset **{row.name}**: {row.base} + {params}."
