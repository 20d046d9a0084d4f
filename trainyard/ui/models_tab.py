"""Models: the registry's presets, and a check of any model name a config may use.

A config's `model.name` is a preset, a HuggingFace hub id or a local `save_pretrained`
folder. Checking one here goes through `create_model`, the same door training uses, so what
loads here loads in a run, and what fails shows the trainer's own message.
"""

from __future__ import annotations

import functools
from typing import Any

import gradio as gr
import pandas as pd

from trainyard.trainer.config import ConfigError, ModelConfig
from trainyard.trainer.models import IMAGENET_MEAN, IMAGENET_STD, MODELS
from trainyard.ui.common import UIContext, user_errors

CANNOT_LOAD = "**Cannot load:**"
CHECK_LABELS = ["a", "b"]  # any two labels build the classifier head; counts barely change
COLUMNS = ["model", "description", "parameters", "input size", "mean", "std"]


@functools.cache
def _preset_parameters(name: str) -> int:
    """Built once per process: presets are fixed code, not per-user data, and building the
    first one imports transformers (seconds)."""
    from trainyard.trainer.models import count_parameters, create_model

    return count_parameters(create_model(name, CHECK_LABELS, pretrained=False).model)


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


def check_model(name: str, image_size: float | None = None, pretrained: bool = True) -> str:
    """Build `name` as training would and describe it. The verdict is the answer either way:
    a model that cannot load is reported here (the trainer's one-line reason), not raised,
    so the page never keeps showing the previous model's report after a failed check."""
    from trainyard.trainer.models import count_parameters, create_model

    ref = (name or "").strip()
    if not ref:
        raise gr.Error("model: give a preset name, a hub id (org/name) or a local folder")
    size = int(image_size) if image_size else None
    try:
        loaded = create_model(ref, CHECK_LABELS, image_size=size, pretrained=pretrained)
    except ConfigError as e:
        return f"{CANNOT_LOAD} {e}"
    arch = type(loaded.model).__name__
    n = count_parameters(loaded.model)
    where = {"preset": "registry preset (random weights)", "local": "local folder", "hub": "hub"}
    return "\n".join(
        [
            f"**{ref}** loads: `{arch}` from the {where.get(loaded.source, loaded.source)}.",
            "",
            f"- **Parameters**: {n:,} ({_fmt_count(n)}) with a 2-class head",
            f"- **Input size**: {loaded.image_size}×{loaded.image_size} px",
            f"- **Normalisation**: mean ({_fmt_floats(loaded.mean)}), "
            f"std ({_fmt_floats(loaded.std)})",
            "",
            f"Use it in a config as `model: {{name: {ref}}}`.",
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

    @user_errors
    def do_list() -> pd.DataFrame:
        return presets_table()

    refresh.click(do_list, None, [table], api_name="list_models")
    check.click(
        user_errors(check_model), [name, size, pretrained], [result], api_name="check_model"
    )
    # The page load sets the project, which fills in the counts without a click (cached).
    return {"table": table, "on_project": [(lambda _pid: presets_table(), [table])]}
