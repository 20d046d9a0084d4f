"""Augmentations: the presets, their parameters, and a preview on the project's own images.

The preview runs the trainer's CPU augmentation (`build_cpu_augment`) on images decoded by
the trainer's loader (`load_image`), so what is shown is what training feeds the model, then
undoes the normalisation for display. The overrides are a YAML mapping, the same text a
config's `augmentation.params` holds: the sliders write it, a script sends it.

The parameters on screen can be saved under a name for the project
(`platform.aug_presets`); the Configs tab offers saved presets beside the built-in ones.
"""

from __future__ import annotations

import random
from typing import Any

import gradio as gr
import pandas as pd
import torch
import yaml
from annotated_types import Ge, Gt, Le, Lt

from trainyard.platform import aug_presets
from trainyard.platform.models import AugmentationPreset
from trainyard.trainer.augment import PRESETS, AugParams, build_cpu_augment, resolve_params
from trainyard.trainer.image_cache import BadImage, load_image
from trainyard.trainer.models import IMAGENET_MEAN, IMAGENET_STD
from trainyard.ui.common import (
    UIContext,
    dynamic_dropdown,
    named_items_view,
    require_project,
    user_errors,
)
from trainyard.ui.datasets_tab import dataset_choices, dataset_path, resolve_dataset

PARAMS = list(AugParams.model_fields)
DISPLAY_MIN_PX = 128  # small images are upscaled (nearest) so single pixels stay visible
MAX_IMAGES = 12
MAX_VERSIONS = 8
SAVED_COLUMNS = ["name", "base", "overrides"]


def presets_table() -> pd.DataFrame:
    rows = [
        {"preset": e.name, "description": e.description, **e.value.model_dump()}
        for e in PRESETS.entries()
    ]
    return pd.DataFrame(rows, columns=["preset", "description", *PARAMS])


def _bounds(name: str) -> tuple[float, float, float]:
    """Slider (minimum, maximum, step) from the field's constraints, so the UI cannot offer a
    value the trainer would refuse."""
    lo, hi = 0.0, 1.0
    for m in AugParams.model_fields[name].metadata:
        if isinstance(m, Ge):
            lo = float(m.ge)  # type: ignore[arg-type]
        elif isinstance(m, Le):
            hi = float(m.le)  # type: ignore[arg-type]
        elif isinstance(m, Lt):
            hi = float(m.lt)  # type: ignore[arg-type]
        elif isinstance(m, Gt):
            lo = float(m.gt)  # type: ignore[arg-type]
    step = 1.0 if hi > 10 else 0.05 if hi > 0.5 else 0.025
    if any(isinstance(m, Gt) for m in AugParams.model_fields[name].metadata):
        lo += step  # strictly greater: the first step above the bound
    return lo, hi, step


def parse_overrides(text: str | dict[str, Any] | None) -> dict[str, Any]:
    """`{hflip: 0, rotation: 30}` (YAML or JSON) to a dict; empty text means no overrides."""
    if isinstance(text, dict):
        return text
    if not (text or "").strip():
        return {}
    try:
        raw = yaml.safe_load(text or "")
    except yaml.YAMLError as e:
        raise ValueError(f"augmentation.params: not valid YAML ({e})".splitlines()[0]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("augmentation.params: expected a mapping such as {hflip: 0.5}")
    return raw


def saved_row(p: AugmentationPreset) -> dict[str, Any]:
    return {"name": p.name, "base": p.base, "overrides": format_overrides(p.params)}


def format_overrides(overrides: dict[str, Any]) -> str:
    if not overrides:
        return "{}"
    return yaml.safe_dump(overrides, default_flow_style=True, sort_keys=False).strip()


def overrides_from_values(preset: str, values: dict[str, float]) -> dict[str, Any]:
    """The slider values that differ from the preset: what a config needs to say."""
    base = PRESETS.get(preset).model_dump()
    return {k: v for k, v in values.items() if abs(float(v) - float(base[k])) > 1e-9}


def augment_preview(
    paths: list[tuple[str, str]], params: AugParams, size: int, versions: int
) -> list[tuple[Any, str]]:
    """For each (path, class): the image as the trainer decodes it, then `versions` augmented
    draws, as PIL images captioned for the gallery."""
    from PIL import Image

    images, captions = [], []
    for path, cls in paths:
        try:
            images.append(load_image(path, size))  # uint8 [3, S, S]
            captions.append(cls)
        except (BadImage, OSError):
            continue  # the dataset's scan report lists unreadable files
    if not images:
        raise ValueError("none of the sample images could be read; rescan the dataset")
    batch = torch.stack(images)  # [N, 3, S, S]
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    augment = build_cpu_augment(params, mean, std)
    # One batch holding every version: [N*V, 3, S, S], image-major like the gallery rows.
    drawn = augment(batch.repeat_interleave(versions, dim=0))
    drawn = (drawn * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)).clamp(0, 1)
    drawn_u8 = (drawn * 255).round().to(torch.uint8)
    scale = max(1, -(-DISPLAY_MIN_PX // size))

    def to_pil(img: torch.Tensor) -> Any:
        pil = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy())
        if scale > 1:
            pil = pil.resize((size * scale, size * scale), Image.Resampling.NEAREST)
        return pil

    out = []
    for i, cls in enumerate(captions):
        out.append((to_pil(batch[i]), f"{cls} · orig"))
        for v in range(versions):
            out.append((to_pil(drawn_u8[i * versions + v]), f"{cls} · #{v + 1}"))
    return out


def pick_samples(samples: dict[str, list[str]], count: int, seed: int) -> list[tuple[str, str]]:
    """`count` (relative path, class) pairs, classes taken in turn so every class shows up;
    `seed` picks which stored sample of each class."""
    rng = random.Random(seed)
    shuffled = {c: rng.sample(paths, len(paths)) for c, paths in samples.items() if paths}
    order = rng.sample(list(shuffled), len(shuffled))
    picked = []
    for i in range(count if order else 0):
        cls = order[i % len(order)]
        paths = shuffled[cls]
        picked.append((paths[(i // len(order)) % len(paths)], cls))
    return picked


def create_augment_tab(ctx: UIContext, project: gr.Dropdown) -> dict[str, Any]:
    gr.Markdown(
        "A preset is a named set of parameters; a config may override any of them under "
        "`augmentation.params`. The preview runs the trainer's own CPU augmentation on the "
        "chosen dataset's images."
    )
    gr.Dataframe(value=presets_table(), interactive=False, label="Presets")
    with gr.Row():
        with gr.Column(scale=2):
            preset = gr.Dropdown(
                label="Preset",
                choices=[(f"{e.name}: {e.description}", e.name) for e in PRESETS.entries()],
                value="standard",
            )
            base = PRESETS.get("standard")
            sliders: dict[str, gr.Slider] = {}
            for field in PARAMS:
                lo, hi, step = _bounds(field)
                sliders[field] = gr.Slider(
                    lo,
                    hi,
                    value=getattr(base, field),
                    step=step,
                    label=field,
                    info=AugParams.model_fields[field].description,
                )
            overrides = gr.Textbox(
                label="Overrides (augmentation.params)",
                info="What differs from the preset, as in a config. Edit here or with the "
                "sliders; a script sends this text.",
                value="{}",
                max_lines=3,
            )
            with gr.Row(equal_height=True):
                saved_name = gr.Textbox(
                    label="Save these parameters as", placeholder="my-preset", scale=3
                )
                save_saved = gr.Button("Save preset", scale=1)
        with gr.Column(scale=3):
            with gr.Row(equal_height=True):
                # A script may send a dataset's id or name; the handler checks it.
                dataset = dynamic_dropdown(label="Dataset", value=None, scale=3)
                size = gr.Slider(8, 512, value=64, step=8, label="Image size (px)", scale=2)
            with gr.Row(equal_height=True):
                count = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images")
                versions = gr.Slider(1, MAX_VERSIONS, value=5, step=1, label="Draws per image")
                seed = gr.Number(label="Sample set", value=0, precision=0, minimum=0)
            with gr.Row():
                preview = gr.Button("Preview (re-roll)", variant="primary")
                other = gr.Button("Other images")
            gallery = gr.Gallery(
                label="Original, then augmented draws",
                columns=6,
                height="auto",
                object_fit="contain",
                format="png",
            )
            resolved = gr.Code(label="Resolved parameters", language="yaml", interactive=False)
    gr.Markdown(
        "### Saved presets (this project)\n"
        "A saved preset is a built-in one plus overrides; a config that uses it gets both "
        "written into its `augmentation` section."
    )
    saved_table = gr.Dataframe(
        value=None, headers=SAVED_COLUMNS, interactive=False, label="Saved presets"
    )
    with gr.Row(equal_height=True):
        # A script may send any name; the handlers check it.
        saved_pick = dynamic_dropdown(label="Saved preset", scale=3)
        load_saved = gr.Button("Load into the sliders", scale=1)
        delete_saved = gr.Button("Delete", variant="stop", scale=1)
        refresh_saved = gr.Button("Refresh", scale=1)
    saved_status = gr.Markdown()

    slider_list = list(sliders.values())

    def on_preset(name: str) -> tuple[Any, ...]:
        p = PRESETS.get(name)
        return (*(getattr(p, f) for f in PARAMS), "{}")

    @user_errors
    def on_slider(name: str, *values: float) -> str:
        return format_overrides(overrides_from_values(name, dict(zip(PARAMS, values, strict=True))))

    def on_overrides_text(name: str, text: str) -> tuple[Any, ...]:
        # Typing a mapping moves the sliders; half-typed or invalid text leaves them alone
        # (the preview names the problem).
        try:
            p = resolve_params(name, parse_overrides(text))
        except (ValueError, KeyError):
            return tuple(gr.update() for _ in PARAMS)
        return tuple(getattr(p, f) for f in PARAMS)

    @user_errors
    def do_preview(
        project_id: Any,
        dataset: Any,
        preset: str = "standard",
        overrides: str = "{}",
        image_size: float = 64,
        images: float = 4,
        draws: float = 5,
        sample_set: float | None = 0,
    ) -> tuple[Any, ...]:
        ds = resolve_dataset(ctx, project_id, dataset)
        params = resolve_params(preset, parse_overrides(overrides))
        px = int(image_size)
        if not 8 <= px <= 512:
            raise ValueError(f"image size: {px} is outside 8..512 px")
        n = min(max(1, int(images)), MAX_IMAGES)
        v = min(max(1, int(draws)), MAX_VERSIONS)
        root = dataset_path(ctx, ds)
        picked = pick_samples((ds.scan or {}).get("samples", {}), n, int(sample_set or 0))
        shown = augment_preview([(str(root / rel), cls) for rel, cls in picked], params, px, v)
        snippet = yaml.safe_dump(
            {"augmentation": {"preset": preset, "params": parse_overrides(overrides)}},
            sort_keys=False,
        )
        full = yaml.safe_dump({"resolved": params.model_dump()}, sort_keys=False)
        return gr.update(value=shown, columns=v + 1), f"{snippet}\n{full}"

    # `input`, not `change`: a user's pick resets the sliders to the preset; loading a saved
    # preset sets the dropdown and the sliders together and must not be reset.
    preset.input(on_preset, [preset], [*slider_list, overrides], api_visibility="private")
    gr.on(
        [s.input for s in slider_list],
        on_slider,
        [preset, *slider_list],
        [overrides],
        api_visibility="private",
        show_progress="hidden",
    )
    gr.on(
        [overrides.blur, overrides.submit],
        on_overrides_text,
        [preset, overrides],
        slider_list,
        api_visibility="private",
        show_progress="hidden",
    )
    preview_inputs = [project, dataset, preset, overrides, size, count, versions, seed]
    preview.click(do_preview, preview_inputs, [gallery, resolved], api_name="preview_augmentation")
    other.click(lambda s: int(s or 0) + 1, [seed], [seed], api_visibility="private").then(
        do_preview, preview_inputs, [gallery, resolved], api_visibility="private"
    )

    @user_errors
    def show_first(project_id: Any, dataset: Any, *rest: Any) -> tuple[Any, ...]:
        # A dataset just chosen (or the project's first) is previewed without a click.
        if project_id in (None, "") or dataset in (None, ""):
            return gr.update(value=[]), ""
        return do_preview(project_id, dataset, *rest)

    dataset.change(show_first, preview_inputs, [gallery, resolved], api_visibility="private")

    def saved_lists(project_id: Any, selected: str | None = None) -> tuple[Any, Any]:
        return named_items_view(
            ctx, project_id, aug_presets.list_aug_presets, saved_row, SAVED_COLUMNS, selected
        )

    @user_errors
    def do_save_preset(
        project_id: Any, preset_name: str, preset: str = "standard", overrides: str = "{}"
    ) -> tuple[Any, ...]:
        pid = require_project(project_id)
        with ctx.platform.session() as s:
            row = aug_presets.save_aug_preset(
                s, pid, preset_name, preset, parse_overrides(overrides)
            )
        line = (
            f"Saved **{row.name}**: {row.base} + {format_overrides(row.params)}. "
            "The Configs tab's augmentation list offers it."
        )
        # The status line sits under the saved list, below the fold beside this button.
        gr.Info(f"Saved preset {row.name}.")
        return (*saved_lists(pid, row.name), line, "")

    @user_errors
    def do_list_presets(project_id: Any) -> tuple[Any, ...]:
        return saved_lists(require_project(project_id))

    def chosen(project_id: Any, name: Any) -> AugmentationPreset:
        pid = require_project(project_id)
        if not str(name or "").strip():
            raise gr.Error("choose a saved preset first")
        with ctx.platform.session() as s:
            return aug_presets.get_aug_preset(s, pid, str(name))

    @user_errors
    def do_delete_preset(project_id: Any, name: str) -> tuple[Any, ...]:
        row = chosen(project_id, name)
        with ctx.platform.session() as s:
            aug_presets.delete_aug_preset(s, row.project_id, row.name)
        line = f"Deleted **{row.name}**. Configs that use it keep their copy of its parameters."
        return (*saved_lists(row.project_id), line)

    @user_errors
    def do_load_preset(project_id: Any, name: str) -> tuple[Any, ...]:
        row = chosen(project_id, name)
        p = aug_presets.resolved_params(row)
        line = f"Loaded **{row.name}** into the sliders."
        return (row.base, *(getattr(p, f) for f in PARAMS), format_overrides(row.params), line)

    save_saved.click(
        do_save_preset,
        [project, saved_name, preset, overrides],
        [saved_table, saved_pick, saved_status, saved_name],
        api_name="save_augmentation_preset",
    )
    delete_saved.click(
        do_delete_preset,
        [project, saved_pick],
        [saved_table, saved_pick, saved_status],
        api_name="delete_augmentation_preset",
    )
    refresh_saved.click(
        do_list_presets,
        [project],
        [saved_table, saved_pick],
        api_name="list_augmentation_presets",
    )
    # Changes only this page (a script reads a preset from the list): no endpoint.
    load_saved.click(
        do_load_preset,
        [project, saved_pick],
        [preset, *slider_list, overrides, saved_status],
        api_visibility="private",
    ).then(show_first, preview_inputs, [gallery, resolved], api_visibility="private")

    def refresh(project_id: Any) -> tuple[Any, ...]:
        choices = dataset_choices(ctx, project_id)
        dataset_update = gr.update(choices=choices, value=choices[0][1] if choices else None)
        return (dataset_update, *saved_lists(project_id))

    # Datasets registered since the project was chosen show up when the list is opened.
    dataset.focus(
        lambda p: gr.update(choices=dataset_choices(ctx, p)),
        [project],
        [dataset],
        api_visibility="private",
        show_progress="hidden",
    )
    return {"dataset": dataset, "on_project": [(refresh, [dataset, saved_table, saved_pick])]}
