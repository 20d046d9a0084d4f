"""Model testing: drop images on a run's checkpoint and see its top-k labels; browse the
validation images the model gets wrong.

Predictors are cached per (checkpoint folder, modification time) in a small bounded cache that
every session shares: it holds models, not user data, and loading one takes a second or more.
A checkpoint rewritten by a still-training run gets a new key, so nobody sees stale weights.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from trainyard.platform import runs
from trainyard.platform.models import Run
from trainyard.trainer.checkpoint import find_checkpoint
from trainyard.trainer.data import scan_dataset
from trainyard.trainer.inference import ImageInput, PredictionError, Predictor
from trainyard.ui.common import (
    UIContext,
    dynamic_dropdown,
    project_runs,
    require_run,
    run_choices,
    user_errors,
)

PREDICTOR_CACHE_SIZE = 4  # models in memory at once, across all sessions
MAX_IMAGES_PER_REQUEST = 100
PREDICT_BATCH = 32
MAX_VAL_IMAGES = 500  # validation images checked for mistakes, spread over every class
MAX_MISTAKES_SHOWN = 200
THUMBNAIL_PX = 192
DEFAULT_TOP_K = 5
RESULT_COLUMNS = ["file", "top label", "confidence", "top-k"]


class PredictorCache:
    """Least-recently-used Predictors keyed by (checkpoint path, newest file mtime)."""

    def __init__(self, max_size: int = PREDICTOR_CACHE_SIZE) -> None:
        self.max_size = max_size
        self._items: OrderedDict[tuple[str, int], Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, checkpoint: Path) -> Predictor:
        path = str(checkpoint.resolve())
        key = (path, _newest_mtime_ns(checkpoint))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        # Loaded outside the lock: one user's slow load does not hold up another's cache hit.
        # Two sessions loading the same new checkpoint at once both load it; the last one wins.
        predictor = Predictor(checkpoint)
        with self._lock:
            for stale in [k for k in self._items if k[0] == path and k != key]:
                del self._items[stale]
            self._items[key] = predictor
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)
        return predictor

    def __len__(self) -> int:
        return len(self._items)


def _newest_mtime_ns(folder: Path) -> int:
    try:
        return max((p.stat().st_mtime_ns for p in folder.iterdir()), default=0)
    except FileNotFoundError:
        return 0


# ---- checkpoints ---------------------------------------------------------------------------


def checkpoint_names(run_dir: str | None) -> list[str]:
    """The loadable checkpoints of a run folder: best, last, then epoch-N newest first."""
    if not run_dir:
        return []
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    names = {
        p.name
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file()
    }
    names |= {n for n in ("best", "last") if find_checkpoint(folder, n) is not None}

    def order(name: str) -> tuple[int, int, str]:
        if name in ("best", "last"):
            return (0 if name == "best" else 1, 0, name)
        num = name.removeprefix("epoch-")
        return (2, -int(num), name) if num.isdigit() else (3, 0, name)

    return sorted(names, key=order)


def resolve_checkpoint(run_dir: str | None, name: Any) -> Path:
    names = checkpoint_names(run_dir)
    if not names:
        raise gr.Error("this run has no checkpoint yet: one is written after its first epoch")
    chosen = str(name or "").strip() or names[0]
    if chosen not in names:
        raise gr.Error(f"checkpoint {chosen!r} not found; this run has: {', '.join(names)}")
    found = find_checkpoint(Path(run_dir or "") / "checkpoints", chosen)
    if found is None:  # removed between the listing and now
        raise gr.Error(f"checkpoint {chosen!r} disappeared; pick another: {', '.join(names)}")
    return found


# ---- predicting ----------------------------------------------------------------------------


def _file_paths(files: Any) -> list[str]:
    if files in (None, ""):
        return []
    items = files if isinstance(files, list | tuple) else [files]
    out = []
    for f in items:
        path = f if isinstance(f, str) else getattr(f, "path", None) or getattr(f, "name", None)
        if path:
            out.append(str(path))
    return out


def predict_paths(predictor: Predictor, paths: list[str], top_k: int) -> list[list[Any]]:
    """Top-k per image, in batches. A refused image stops the request with the Predictor's
    message, naming the file as the user called it rather than by its upload path."""
    results: list[list[Any]] = []
    for start in range(0, len(paths), PREDICT_BATCH):
        batch = paths[start : start + PREDICT_BATCH]
        inputs: list[ImageInput] = list(batch)
        try:
            results.extend(predictor.predict(inputs, top_k=top_k))
        except PredictionError as e:
            message = str(e)
            for p in batch:
                message = message.replace(p, Path(p).name)
            raise gr.Error(message, print_exception=False) from None
    return results


def results_table(paths: list[str], preds: list[list[Any]]) -> pd.DataFrame:
    rows = [
        {
            "file": Path(p).name,
            "top label": top[0].label,
            "confidence": round(top[0].score, 4),
            "top-k": ", ".join(f"{x.label} ({x.score:.2f})" for x in top),
        }
        for p, top in zip(paths, preds, strict=True)
    ]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def spread_sample(n: int, limit: int) -> list[int]:
    """At most `limit` indices spread evenly over range(n): ImageFolder lists are sorted by
    class, so the first `limit` would miss the later classes."""
    if n <= limit:
        return list(range(n))
    step = n / limit
    return sorted({math.floor(i * step) for i in range(limit)})


def thumbnail(path: str) -> Image.Image:
    with Image.open(path) as src:
        src.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))  # JPEG: decode at reduced size
        im = src.convert("RGB")
    im.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    return im


# ---- the tab -------------------------------------------------------------------------------


def create_testing_tab(
    ctx: UIContext, project: gr.Dropdown, selected_run: gr.State
) -> dict[str, Any]:
    cache = PredictorCache()
    with gr.Row():
        run = dynamic_dropdown(label="Run", elem_id="ty-testing-run", value=None, scale=4)
        checkpoint = dynamic_dropdown(label="Checkpoint", value=None, scale=2)
        top_k = gr.Slider(1, 10, value=DEFAULT_TOP_K, step=1, label="Top k", scale=2)
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(
                type="filepath",
                image_mode=None,  # as uploaded; the Predictor converts to RGB
                sources=["upload", "clipboard"],
                label="Drop one image",
                height=240,
                elem_id="ty-test-image",
            )
            files = gr.File(
                file_count="multiple",
                file_types=["image"],
                label="Or many images",
                height=140,
                elem_id="ty-test-files",
            )
            predict_btn = gr.Button("Predict", variant="primary")
        with gr.Column(scale=1):
            label = gr.Label(num_top_classes=10, label="Prediction")
            table = gr.Dataframe(
                pd.DataFrame(columns=RESULT_COLUMNS), interactive=False, label="Predictions"
            )
    gr.Markdown("### Validation images the model gets wrong")
    with gr.Row():
        max_images = gr.Slider(
            10, MAX_VAL_IMAGES, value=MAX_VAL_IMAGES, step=10, label="Images checked", scale=3
        )
        mistakes_btn = gr.Button("Find mistakes", scale=0, min_width=170)
    mistakes_note = gr.Markdown()
    gallery = gr.Gallery(label="Mistakes", columns=6, height="auto", object_fit="contain")

    def run_row(run_id: Any) -> Run:
        rid = require_run(run_id)
        with ctx.platform.session() as s:
            return runs.get_run(s, rid)

    @user_errors
    def list_checkpoints(run_id: Any) -> Any:
        if run_id in (None, ""):
            return gr.update(choices=[], value=None)
        names = checkpoint_names(run_row(run_id).run_dir)
        return gr.update(choices=names, value=names[0] if names else None)

    @user_errors
    def predict(
        run_id: Any, checkpoint: Any, files: Any, top_k: Any, image: Any = None
    ) -> tuple[Any, pd.DataFrame]:
        """Top-k labels of the checkpoint for each image: a label view when there is one
        image, and a table row per image."""
        paths = _file_paths(files) + _file_paths(image)
        if not paths:
            raise gr.Error("drop one or more images first")
        if len(paths) > MAX_IMAGES_PER_REQUEST:
            raise gr.Error(
                f"{len(paths)} images at once; send at most {MAX_IMAGES_PER_REQUEST} per request"
            )
        predictor = cache.get(resolve_checkpoint(run_row(run_id).run_dir, checkpoint))
        preds = predict_paths(predictor, paths, int(top_k or DEFAULT_TOP_K))
        # The label view is for one image; many are compared in the table.
        one = {x.label: x.score for x in preds[0]} if len(preds) == 1 else None
        return one, results_table(paths, preds)

    @user_errors
    def predict_image(run_id: Any, checkpoint: Any, image: Any, top_k: Any) -> Any:
        if image in (None, ""):
            return None
        one, _ = predict(run_id, checkpoint, None, top_k, image)
        return one

    @user_errors
    def val_mistakes(run_id: Any, checkpoint: Any, max_images: Any) -> tuple[list, str]:
        """The validation images (up to `max_images`, spread over the classes) the checkpoint
        gets wrong, most confident first, captioned "true X, predicted Y (p)"."""
        r = run_row(run_id)
        predictor = cache.get(resolve_checkpoint(r.run_dir, checkpoint))
        root = ctx.platform.absolute_data_root(r.config)["data"]["root"]
        scan = scan_dataset(root)
        val, classes = scan.splits["val"], scan.classes
        picked = spread_sample(len(val), min(int(max_images or MAX_VAL_IMAGES), MAX_VAL_IMAGES))
        mistakes, unreadable = [], 0
        for start in range(0, len(picked), PREDICT_BATCH):
            idx = picked[start : start + PREDICT_BATCH]
            try:
                preds = predictor.predict([val.paths[i] for i in idx], top_k=1)
            except PredictionError:  # one bad file refuses the batch: go one by one
                preds = []
                for i in idx:
                    try:
                        preds.extend(predictor.predict([val.paths[i]], top_k=1))
                    except PredictionError:
                        preds.append([])
                        unreadable += 1
            for i, top in zip(idx, preds, strict=True):
                truth = classes[val.labels[i]]
                if top and top[0].label != truth:
                    mistakes.append((top[0].score, i, truth, top[0].label))
        mistakes.sort(key=lambda m: -m[0])  # the most confident mistakes first
        shown = mistakes[:MAX_MISTAKES_SHOWN]
        items = [
            (thumbnail(val.paths[i]), f"true {truth}, predicted {pred} ({p:.2f})")
            for p, i, truth, pred in shown
        ]
        checked = len(picked) - unreadable
        note = (
            f"{len(mistakes)} of {checked} validation images wrong "
            f"({1 - len(mistakes) / max(checked, 1):.1%} right)"
        )
        if len(picked) < len(val):
            note += f"; checked {len(picked)} of {len(val)}, spread over every class"
        if len(shown) < len(mistakes):
            note += f"; showing the {len(shown)} most confident"
        if unreadable:
            note += f"; {unreadable} unreadable images skipped"
        return items, note

    @user_errors
    def follow_selected(run_id: Any, project_id: Any) -> Any:
        if run_id in (None, ""):
            return gr.skip()
        pid = int(project_id) if project_id not in (None, "") else None
        return gr.update(choices=run_choices(ctx, pid), value=int(run_id))

    @user_errors
    def on_project(project_id: Any) -> Any:
        choices, first = project_runs(ctx, project_id)
        return gr.update(choices=choices, value=first)

    run.change(list_checkpoints, [run], [checkpoint], api_name="list_checkpoints")
    predict_btn.click(
        predict, [run, checkpoint, files, top_k, image], [label, table], api_name="predict"
    )
    files.upload(predict, [run, checkpoint, files, top_k], [label, table], api_visibility="private")
    image.upload(predict_image, [run, checkpoint, image, top_k], [label], api_name="predict_image")
    image.clear(lambda: None, None, [label], api_visibility="private")
    mistakes_btn.click(
        val_mistakes,
        [run, checkpoint, max_images],
        [gallery, mistakes_note],
        api_name="val_mistakes",
    )
    selected_run.change(follow_selected, [selected_run, project], [run], api_visibility="private")
    return {
        "run": run,
        "checkpoint": checkpoint,
        "predictor_cache": cache,
        "on_project": [(on_project, [run])],
    }
