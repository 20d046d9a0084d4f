"""Datasets: register ImageFolder folders under the datasets root, look at what is in them,
and unregister them (the folder itself is never deleted).

The report (classes, images per split, sizes, unreadable and ignored files) is the scan the
platform stored when the dataset was registered or rescanned; the tab never walks the folder
itself except to load the few sample thumbnails. Thumbnails go to the gallery as PIL images,
so Gradio serves them from its own cache and the datasets root needs no `allowed_paths`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from trainyard.platform import datasets
from trainyard.platform.errors import NotFound, PlatformError
from trainyard.platform.models import Dataset
from trainyard.ui.common import UIContext, ago, dynamic_dropdown, require_project, user_errors

THUMB_MIN_PX = 96  # digits are 32 px: upscale (nearest) so a pixel is visible in the gallery
THUMB_MAX_PX = 256  # photos are larger: shrink so a gallery of 80 samples stays light
SPLITS = ("train", "val", "test")

TABLE_COLUMNS = ["id", "name", "folder", "classes", *SPLITS, "unreadable", "scanned"]
COUNT_COLUMNS = ["class", "split", "images"]
PROBLEM_COLUMNS = ["kind", "path", "problem"]
NO_DATASET = "No dataset selected. Register one above, or choose one from the list."


# ---- helpers the Augmentations and Configs tabs share ----------------------------------------


def dataset_choices(ctx: UIContext, project_id: Any) -> list[tuple[str, int]]:
    """(name, id) of the project's datasets; empty when no project is chosen."""
    if project_id in (None, ""):
        return []
    with ctx.platform.session() as s:
        return [(d.name, d.id) for d in datasets.list_datasets(s, int(project_id))]  # type: ignore[misc]


def resolve_dataset(ctx: UIContext, project_id: Any, value: Any) -> Dataset:
    """The project's dataset chosen by id (the dropdown) or by name (a script may send either).
    A dataset of another project is refused as if it did not exist."""
    pid = require_project(project_id)
    if value in (None, ""):
        raise gr.Error("choose a dataset first (register one in the Datasets tab)")
    with ctx.platform.session() as s:
        rows = datasets.list_datasets(s, pid)
    text = str(value).strip()
    for ds in rows:
        if str(ds.id) == text or ds.name == text:
            return ds
    names = ", ".join(d.name for d in rows) or "none registered yet"
    raise NotFound(f"this project has no dataset {text!r} (datasets: {names})")


def dataset_path(ctx: UIContext, ds: Dataset) -> Path:
    return datasets.dataset_root(ds, ctx.platform.settings.datasets_dir)


def load_thumbnail(path: Path) -> Any:
    """A PIL image sized for a gallery: small images upscaled without blurring, large ones
    shrunk. Returns None for a file PIL cannot open (the scan report names it)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except Exception:  # PIL raises many kinds for broken files
        return None
    side = max(img.size)
    if side < THUMB_MIN_PX:
        k = -(-THUMB_MIN_PX // side)
        img = img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)
    elif side > THUMB_MAX_PX:
        img.thumbnail((THUMB_MAX_PX, THUMB_MAX_PX))
    return img


# ---- what the tab shows -----------------------------------------------------------------------


def datasets_table(ctx: UIContext, project_id: Any) -> pd.DataFrame:
    rows = []
    if project_id not in (None, ""):
        with ctx.platform.session() as s:
            found = datasets.list_datasets(s, int(project_id))
        for ds in found:
            scan = ds.scan or {}
            counts = scan.get("counts", {})
            rows.append(
                {
                    "id": ds.id,
                    "name": ds.name,
                    "folder": ds.path,
                    "classes": len(scan.get("classes", [])),
                    **{sp: sum(counts[sp]) if sp in counts else None for sp in SPLITS},
                    "unreadable": len(scan.get("unreadable", [])),
                    "scanned": _scanned_ago(ds),
                }
            )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _scanned_ago(ds: Dataset) -> str:
    if ds.scanned_at is None:
        return "never"
    from datetime import UTC, datetime

    at = ds.scanned_at if ds.scanned_at.tzinfo else ds.scanned_at.replace(tzinfo=UTC)
    return ago((datetime.now(UTC) - at).total_seconds())


def folder_choices(ctx: UIContext) -> list[str]:
    """Visible folders directly under the datasets root: what a user is most likely to
    register. Deeper folders can still be typed in."""
    root = Path(ctx.platform.settings.datasets_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def summary_markdown(ds: Dataset) -> str:
    scan = ds.scan or {}
    classes: list[str] = scan.get("classes", [])
    counts: dict[str, list[int]] = scan.get("counts", {})
    per_split = " · ".join(f"{sp} {sum(counts[sp]):,}" for sp in SPLITS if sp in counts)
    sizes = ", ".join(f"{s['width']}×{s['height']} ({s['count']:,})" for s in scan.get("sizes", []))
    unreadable = len(scan.get("unreadable", []))
    ignored = len(scan.get("ignored", []))
    lines = [
        f"**{ds.name}** in `{ds.path}/` (scanned {_scanned_ago(ds)})",
        "",
        f"- **{len(classes)} classes**: {', '.join(classes[:30])}"
        + (f" and {len(classes) - 30} more" if len(classes) > 30 else ""),
        f"- **{scan.get('images', 0):,} images**: {per_split}",
        f"- **Most common sizes**: {sizes or 'none readable'}",
        f"- **Unreadable**: {unreadable:,}; **ignored** (hidden or not images): "
        + (f"{ignored:,}" if ignored < 100 else "100 or more"),
    ]
    lines += [f"- **Warning**: {w}" for w in _warnings(classes, counts)]
    return "\n".join(lines)


def _warnings(classes: list[str], counts: dict[str, list[int]]) -> list[str]:
    """What a reader would want pointed out: missing classes in a split, a skewed train set."""
    out = []
    for sp in ("val", "test"):
        missing = [c for c, n in zip(classes, counts.get(sp, []), strict=False) if n == 0]
        if missing:
            out.append(f"{sp}/ has no images of: {', '.join(missing[:10])}")
    train = [n for n in counts.get("train", []) if n > 0]
    if train and max(train) >= 3 * min(train):
        out.append(
            f"train/ is imbalanced: {max(train):,} vs {min(train):,} images per class "
            "(consider loss: focal, or monitor: f1_macro)"
        )
    return out


def counts_frame(ds: Dataset) -> pd.DataFrame:
    """Long form (class, split, images) for the bar chart."""
    scan = ds.scan or {}
    rows = [
        {"class": cls, "split": sp, "images": n}
        for sp in SPLITS
        for cls, n in zip(scan.get("classes", []), scan.get("counts", {}).get(sp, []), strict=False)
    ]
    return pd.DataFrame(rows, columns=COUNT_COLUMNS)


def counts_table(ds: Dataset) -> pd.DataFrame:
    """Wide form (class, train, val, test) for exact numbers."""
    long = counts_frame(ds)
    if long.empty:
        return pd.DataFrame(columns=["class", *SPLITS])
    wide = long.pivot_table(index="class", columns="split", values="images", sort=False)
    wide = wide.reindex(columns=[sp for sp in SPLITS if sp in wide.columns]).fillna(0)
    return wide.astype(int).reset_index()


def problems_frame(ds: Dataset) -> pd.DataFrame:
    scan = ds.scan or {}
    rows = [
        {"kind": "unreadable", "path": b["path"], "problem": b["problem"]}
        for b in scan.get("unreadable", [])
    ]
    for p in scan.get("ignored", []):
        rows.append({"kind": "ignored", "path": p, "problem": "hidden, or not an image"})
    return pd.DataFrame(rows, columns=PROBLEM_COLUMNS)


def usage_line(usage: datasets.DatasetUsage) -> str:
    """What names the dataset's folder as `data.root`, in one sentence."""
    named = []
    if usage.configs:
        named.append(f"config(s) {', '.join(usage.configs)}")
    if usage.finished_runs:
        named.append(f"{usage.finished_runs} finished run(s)")
    if usage.unfinished_runs:
        named.append(f"{usage.unfinished_runs} queued or running run(s)")
    if not named:
        return "No config or run of this project names its folder."
    line = (
        f"Its folder is the `data.root` of {'; '.join(named)}: they keep that path and keep "
        "working, since the folder stays."
    )
    if usage.unfinished_runs:
        line += " Unregistering is refused until the queued and running ones finish."
    return line


def sample_gallery(ctx: UIContext, ds: Dataset, per_class: int) -> list[tuple[Any, str]]:
    """Up to `per_class` thumbnails per class from the samples the scan stored, captioned with
    the class name."""
    root = dataset_path(ctx, ds)
    out = []
    samples: dict[str, list[str]] = (ds.scan or {}).get("samples", {})
    for cls, paths in samples.items():
        for rel in paths[: max(1, int(per_class))]:
            img = load_thumbnail(root / rel)
            if img is not None:
                out.append((img, cls))
    return out


def create_datasets_tab(ctx: UIContext, project: gr.Dropdown) -> dict[str, Any]:
    root = Path(ctx.platform.settings.datasets_dir).resolve()
    gr.Markdown(
        f"A dataset is an ImageFolder under the datasets root `{root}`: "
        "`train/CLASS/*.png`, `val/CLASS/*.png` and an optional `test/`. "
        "Copy or link a folder there, then register it."
    )
    with gr.Row(equal_height=True):
        # Suggests the root's folders; any folder under the root may be typed in.
        folder = dynamic_dropdown(
            label="Folder",
            info="Relative to the datasets root, or an absolute path inside it.",
            value=None,
            scale=3,
        )
        name = gr.Textbox(label="Name", info="Empty: the folder's name.", scale=2)
        register = gr.Button("Register dataset", variant="primary", scale=1)
    table = gr.Dataframe(value=None, interactive=False, label="Datasets of this project")
    with gr.Row(equal_height=True):
        # A script may send a dataset's id or name; the handlers check it.
        dataset = dynamic_dropdown(label="Dataset", value=None, scale=3)
        per_class = gr.Slider(1, 8, value=4, step=1, label="Samples per class", scale=2)
        refresh = gr.Button("Refresh list", scale=1)
        rescan = gr.Button("Rescan folder", scale=1)
    with gr.Accordion("Unregister the selected dataset", open=False) as unregister_box:
        gr.Markdown(
            "Removes the dataset from this project's lists. **The folder on disk is never "
            "deleted**: configs and finished runs that name it keep working, and it can be "
            "registered again. Refused while a queued or running run reads it."
        )
        usage = gr.Markdown()
        with gr.Row(equal_height=True):
            confirm = gr.Textbox(label="Type the dataset's name to confirm", scale=3)
            delete = gr.Button("Unregister dataset", variant="stop", scale=1)
    status = gr.Markdown()
    summary = gr.Markdown(NO_DATASET)
    with gr.Row():
        chart = gr.BarPlot(
            value=None,
            x="class",
            y="images",
            color="split",
            title="Images per class and split",
            sort=None,
            height=320,
            scale=3,
        )
        with gr.Column(scale=2):
            with gr.Accordion("Counts per class", open=False):
                counts = gr.Dataframe(value=None, interactive=False, show_label=False)
            problems = gr.Dataframe(
                value=None, interactive=False, label="Unreadable and ignored files", max_height=260
            )
    gallery = gr.Gallery(
        label="Samples (train/), captioned with their class",
        columns=8,
        height="auto",
        object_fit="contain",
        format="png",  # lossless: a webp of an 8x8 digit upscaled smears its pixels
    )

    report_outputs = [summary, chart, counts, problems, gallery]

    def report(ds: Dataset | None, samples: int) -> tuple[Any, ...]:
        if ds is None:
            return NO_DATASET, None, None, None, []
        return (
            summary_markdown(ds),
            counts_frame(ds),
            counts_table(ds),
            problems_frame(ds),
            sample_gallery(ctx, ds, samples),
        )

    def lists(project_id: Any, selected: int | None = None) -> tuple[Any, ...]:
        choices = dataset_choices(ctx, project_id)
        ids = [v for _, v in choices]
        value = selected if selected in ids else (ids[0] if ids else None)
        return (
            gr.update(choices=choices, value=value),
            datasets_table(ctx, project_id),
            gr.update(choices=folder_choices(ctx)),
        )

    @user_errors
    def do_register(project_id: Any, folder: str, name: str) -> tuple[Any, ...]:
        pid = require_project(project_id)
        with ctx.platform.session() as s:
            ds = datasets.register_dataset(s, pid, name, folder, ctx.platform.settings.datasets_dir)
        n = (ds.scan or {}).get("images", 0)
        return (
            *lists(pid, ds.id),
            f"Registered **{ds.name}** ({n:,} images).",
            "",
        )

    @user_errors
    def do_report(project_id: Any, dataset: Any, samples: int = 4) -> tuple[Any, ...]:
        if project_id in (None, "") or dataset in (None, ""):
            return report(None, samples)
        return report(resolve_dataset(ctx, project_id, dataset), samples)

    @user_errors
    def do_rescan(project_id: Any, dataset: Any, samples: int = 4) -> tuple[Any, ...]:
        ds = resolve_dataset(ctx, project_id, dataset)
        with ctx.platform.session() as s:
            ds = datasets.rescan_dataset(s, ds.id or 0, ctx.platform.settings.datasets_dir)
        n = (ds.scan or {}).get("images", 0)
        return (
            *report(ds, samples),
            datasets_table(ctx, project_id),
            f"Rescanned **{ds.name}**: {n:,} images.",
        )

    @user_errors
    def do_list(project_id: Any, dataset: Any = None) -> tuple[Any, ...]:
        require_project(project_id)
        return lists(project_id, dataset)

    @user_errors
    def do_delete(project_id: Any, dataset: Any, confirm_name: str) -> tuple[Any, ...]:
        ds = resolve_dataset(ctx, project_id, dataset)
        if (confirm_name or "").strip() != ds.name:
            raise gr.Error(f"type the dataset's name, {ds.name!r}, to confirm")
        with ctx.platform.session() as s:
            found = datasets.delete_dataset(s, ds.id or 0, ctx.platform.settings.datasets_dir)
        return (
            *lists(project_id),
            f"Unregistered **{ds.name}**; its folder `{ds.path}/` is still on disk. "
            + usage_line(found),
            "",
        )

    def show_usage(project_id: Any, dataset: Any) -> str:
        # Beside the delete button, so a user sees what names the folder before confirming;
        # the report already shows any error about the chosen dataset.
        if project_id in (None, "") or dataset in (None, ""):
            return ""
        try:
            ds = resolve_dataset(ctx, project_id, dataset)
            with ctx.platform.session() as s:
                found = datasets.dataset_usage(s, ds, ctx.platform.settings.datasets_dir)
        except (gr.Error, PlatformError):
            return ""
        return f"**{ds.name}** (`{ds.path}/`): {usage_line(found)}"

    register.click(
        do_register,
        [project, folder, name],
        [dataset, table, folder, status, name],
        api_name="register_dataset",
    )
    gr.on(
        [dataset.change, per_class.release],
        do_report,
        [project, dataset, per_class],
        report_outputs,
        api_name="dataset_report",
    )
    rescan.click(
        do_rescan,
        [project, dataset, per_class],
        [*report_outputs, table, status],
        api_name="rescan_dataset",
    )
    refresh.click(do_list, [project, dataset], [dataset, table, folder], api_name="list_datasets")
    delete.click(
        do_delete,
        [project, dataset, confirm],
        [dataset, table, folder, status, confirm],
        api_name="delete_dataset",
    )
    # The usage scans the project's configs and runs: only while the section is open.
    unregister_open = gr.State(False)
    unregister_box.expand(lambda: True, None, [unregister_open], api_visibility="private")
    unregister_box.collapse(lambda: False, None, [unregister_open], api_visibility="private")
    unregister_box.expand(show_usage, [project, dataset], [usage], api_visibility="private")
    dataset.change(
        lambda p, d, is_open: show_usage(p, d) if is_open else "",
        [project, dataset, unregister_open],
        [usage],
        api_visibility="private",
    )
    return {
        "dataset": dataset,
        "table": table,
        "on_project": [(lambda pid: lists(pid), [dataset, table, folder])],
    }
