"""Models: the registry's presets, a check of any model name a config may use, and the
project's saved models.

A config's `model.name` is a preset, a HuggingFace hub id or a local `save_pretrained`
folder. Checking one here goes through `create_model`, the same door training uses, so what
loads here loads in a run, and what fails shows the trainer's own message. Saving one under a
name (`platform.model_entries`) runs the same check first; the Configs tab then offers it.
"""

from __future__ import annotations

import functools
from typing import Any

import gradio as gr
import pandas as pd

from trainyard.platform import model_entries
from trainyard.platform.models import ModelEntry
from trainyard.trainer.config import ConfigError, ModelConfig
from trainyard.trainer.models import IMAGENET_MEAN, IMAGENET_STD, MODELS
from trainyard.ui.common import (
    UIContext,
    dynamic_dropdown,
    named_items_view,
    require_project,
    user_errors,
)

CANNOT_LOAD = "**Cannot load:**"
COLUMNS = ["model", "description", "parameters", "input size", "mean", "std"]
ENTRY_COLUMNS = ["name", "kind", "ref", "parameters", "input size"]


@functools.cache
def _preset_parameters(name: str) -> int:
    """Built once per process: presets are fixed code, not per-user data, and building the
    first one imports transformers (seconds)."""
    from trainyard.trainer.models import inspect_model

    return inspect_model(name, pretrained=False).parameters


def _fmt_floats(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def _fmt_count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def presets_table(with_parameters: bool = True) -> pd.DataFrame:
    """One row per registry preset. Without `with_parameters` nothing is built (fast)."""
    rows = [
        {
            "model": e.name,
            "description": e.description,
            "parameters": _fmt_count(_preset_parameters(e.name)) if with_parameters else "…",
            "input size": f"{e.value.image_size}×{e.value.image_size}",
            "mean": _fmt_floats(IMAGENET_MEAN),
            "std": _fmt_floats(IMAGENET_STD),
        }
        for e in MODELS.entries()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def entry_row(e: ModelEntry) -> dict[str, Any]:
    side = e.image_size
    return {
        "name": e.name,
        "kind": e.kind,
        "ref": e.ref,
        "parameters": _fmt_count(e.parameters) if e.parameters is not None else "",
        "input size": f"{side}×{side}" if side else "",
    }


def check_model(name: str, image_size: float | None = None, pretrained: bool = True) -> str:
    """Build `name` as training would and describe it. The verdict is the answer either way:
    a model that cannot load is reported here (the trainer's one-line reason), not raised,
    so the page never keeps showing the previous model's report after a failed check."""
    from trainyard.trainer.models import inspect_model

    ref = (name or "").strip()
    if not ref:
        raise gr.Error("model: give a preset name, a hub id (org/name) or a local folder")
    size = int(image_size) if image_size else None
    try:
        m = inspect_model(ref, image_size=size, pretrained=pretrained)
    except ConfigError as e:
        return f"{CANNOT_LOAD} {e}"
    n = m.parameters
    where = {"preset": "registry preset (random weights)", "local": "local folder", "hub": "hub"}
    return "\n".join(
        [
            f"**{ref}** loads: `{m.architecture}` from the {where.get(m.source, m.source)}.",
            "",
            f"- **Parameters**: {n:,} ({_fmt_count(n)}) with a 2-class head",
            f"- **Input size**: {m.image_size}×{m.image_size} px",
            f"- **Normalisation**: mean ({_fmt_floats(m.mean)}), std ({_fmt_floats(m.std)})",
            "",
            f"Use it in a config as `model: {{name: {m.ref}}}`.",
        ]
    )


def create_models_tab(ctx: UIContext, project: gr.Dropdown) -> dict[str, Any]:
    gr.Markdown(
        "Presets train from random weights and fit a CPU. A config can also name a "
        "HuggingFace hub id (fine-tuning, needs the model in the local cache when offline) or a "
        "local `save_pretrained` folder, such as a finished run's `best/`."
    )
    table = gr.Dataframe(
        value=presets_table(with_parameters=False), interactive=False, label="Model presets"
    )
    refresh = gr.Button("Count parameters", size="sm")
    gr.Markdown("### Check a model")
    with gr.Row(equal_height=True):
        name = gr.Dropdown(
            label="Model",
            info=ModelConfig.model_fields["name"].description,
            choices=MODELS.names(),
            value=MODELS.names()[0],
            allow_custom_value=True,
            scale=4,
        )
        size = gr.Number(
            label="Image size",
            info="0: the model's own.",
            value=0,
            precision=0,
            scale=1,
        )
        pretrained = gr.Checkbox(
            label="Pretrained weights",
            info=ModelConfig.model_fields["pretrained"].description,
            value=True,
            scale=1,
        )
        check = gr.Button("Check model", variant="primary", scale=1)
    result = gr.Markdown()
    gr.Markdown(
        "### Saved models (this project)\n"
        "Save the model above under a name: it is checked the same way first, and the Configs "
        "tab's model list offers it. A hub model must be in the local cache (downloads are off "
        "unless `TRAINYARD_HUB_OFFLINE=0`)."
    )
    with gr.Row(equal_height=True):
        entry_name = gr.Textbox(label="Save the model above as", placeholder="my-model", scale=4)
        save_entry = gr.Button("Save model", scale=1)
    entries = gr.Dataframe(
        value=None, headers=ENTRY_COLUMNS, interactive=False, label="Saved models"
    )
    with gr.Row(equal_height=True):
        # A script may send any name; the handler checks it.
        entry_pick = dynamic_dropdown(label="Saved model", scale=4)
        delete_entry = gr.Button("Delete", variant="stop", scale=1)
        refresh_entries = gr.Button("Refresh", scale=1)
    entry_status = gr.Markdown()

    @user_errors
    def do_list() -> pd.DataFrame:
        return presets_table()

    def entry_lists(project_id: Any, selected: str | None = None) -> tuple[Any, Any]:
        return named_items_view(
            ctx, project_id, model_entries.list_model_entries, entry_row, ENTRY_COLUMNS, selected
        )

    @user_errors
    def do_save_entry(project_id: Any, entry_name: str, model: str) -> tuple[Any, ...]:
        pid = require_project(project_id)
        with ctx.platform.session() as s:
            e = model_entries.save_model_entry(s, pid, entry_name, model)
        row = entry_row(e)
        line = (
            f"Saved **{e.name}**: `{e.ref}` ({e.kind}, {row['parameters']} parameters, "
            f"{row['input size']} px). The Configs tab's model list offers it."
        )
        return (*entry_lists(pid, e.name), line, "")

    @user_errors
    def do_list_entries(project_id: Any) -> tuple[Any, ...]:
        return entry_lists(require_project(project_id))

    @user_errors
    def do_delete_entry(project_id: Any, entry: str) -> tuple[Any, ...]:
        pid = require_project(project_id)
        if not (entry or "").strip():
            raise gr.Error("choose a saved model first")
        with ctx.platform.session() as s:
            e = model_entries.delete_model_entry(s, pid, entry)
        line = f"Deleted **{e.name}**. Configs that use it keep their copy of `{e.ref}`."
        return (*entry_lists(pid), line)

    refresh.click(do_list, None, [table], api_name="list_models")
    check.click(
        user_errors(check_model), [name, size, pretrained], [result], api_name="check_model"
    )
    save_entry.click(
        do_save_entry,
        [project, entry_name, name],
        [entries, entry_pick, entry_status, entry_name],
        api_name="save_model_entry",
    )
    delete_entry.click(
        do_delete_entry,
        [project, entry_pick],
        [entries, entry_pick, entry_status],
        api_name="delete_model_entry",
    )
    refresh_entries.click(
        do_list_entries, [project], [entries, entry_pick], api_name="list_model_entries"
    )
    # The page load sets the project, which fills in the counts without a click (cached).
    return {
        "table": table,
        "on_project": [
            (lambda _pid: presets_table(), [table]),
            (entry_lists, [entries, entry_pick]),
        ],
    }
