"""Metrics: live charts of a run's epoch metrics, several runs compared on one chart, and the
confusion matrix and per-class accuracy of the best checkpoint (validation) or of the test set.

Charts read only the database's Metric rows (written by the platform's log follower), so they
survive restarts and update while the run trains. The confusion matrix and per-class accuracy
come from the run folder: `checkpoints/best/trainyard.json` (val) and `results.json` (test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlmodel import col, select

from trainyard.platform import runlogs, runs
from trainyard.platform.errors import NotFound
from trainyard.platform.models import Metric, Run
from trainyard.platform.status import RunStatus
from trainyard.trainer.checkpoint import INFO_FILE, find_checkpoint
from trainyard.ui.common import (
    UIContext,
    dynamic_dropdown,
    project_runs,
    require_run,
    run_choices,
    run_id_list,
    user_errors,
)

LIVE_PERIOD_S = 2.0
MAX_COMPARE_RUNS = 20
SERIES_COLUMNS = ["epoch", "split", "name", "value"]
COMPARE_COLUMNS = ["epoch", "value", "run"]
PER_CLASS_COLUMNS = ["class", "accuracy"]
CHART_SPLITS = ("train", "val")  # test is one point at the end: it goes in the summary
# (title, metric name) of the per-run charts, in display order.
CHARTS = (
    ("Loss", "loss"),
    ("Accuracy", "accuracy"),
    ("F1 (macro)", "f1_macro"),
    ("Learning rate", "lr"),
)
COMPARE_METRICS = [
    "val/accuracy",
    "val/loss",
    "val/f1_macro",
    "val/top5",
    "train/loss",
    "train/accuracy",
    "train/lr",
]
CONFUSION_CORNER = "true \\ predicted"
CONFUSION_SOURCES = [("validation, best checkpoint", "val"), ("test set", "test")]


# ---- data ----------------------------------------------------------------------------------


def typed_frame(columns: list[str], rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """A frame whose numeric columns are numeric even when empty: a chart takes its axis
    types from the first frame it gets, and an empty object column would make the value
    axis a list of categories."""
    dtypes = {"epoch": "int64", "value": "float64", "accuracy": "float64"}
    df = pd.DataFrame(rows or [], columns=columns)
    return df.astype({c: dtypes.get(c, "str") for c in columns})


def metric_frame(rows: list[Metric]) -> pd.DataFrame:
    """One row per (epoch, split, name): the last value written wins, because a resumed run
    may report an epoch its crashed attempt already reported."""
    data = [
        {"epoch": m.epoch, "split": m.split, "name": m.name, "value": m.value}
        for m in rows
        if m.epoch is not None
    ]
    df = typed_frame(SERIES_COLUMNS, data)
    if df.empty:
        return df
    df = df.drop_duplicates(["epoch", "split", "name"], keep="last")
    return df.sort_values(["epoch", "split", "name"], kind="stable").reset_index(drop=True)


def chart_frame(df: pd.DataFrame | None, name: str) -> pd.DataFrame | None:
    """One chart's rows, or None when there are none. Gradio 6.31's plots build their chart
    from the first frame they draw: an empty frame leaves a chart that later draws no lines,
    while None (nothing drawn yet) does not."""
    if df is None or df.empty or "name" not in df:
        return None
    part = df[(df["name"] == name) & (df["split"].isin(CHART_SPLITS))]
    if part.empty:
        return None
    return part.astype({"epoch": int, "value": float}).reset_index(drop=True)


def metric_signature(ctx: UIContext, run_id: int) -> list[Any]:
    """What changes when a run has news: its status and its metric rows. Two indexed
    lookups, cheap enough for a timer."""
    with ctx.platform.session() as s:
        run = runs.get_run(s, run_id)
        count, last = s.exec(
            select(func.count(col(Metric.id)), func.max(col(Metric.id))).where(
                Metric.run_id == run_id
            )
        ).one()
    return [run_id, str(run.status), int(count), last]


def run_summary(run: Run, df: pd.DataFrame) -> str:
    status = RunStatus(run.status)
    epochs = (run.config.get("loop") or {}).get("epochs")
    monitor = (run.config.get("loop") or {}).get("monitor", "accuracy")
    head = [f"**#{run.id} {run.name}**", f"`{status}`"]
    if run.epoch is not None:
        head.append(f"epoch {run.epoch}" + (f" of {epochs}" if epochs else ""))
    if not status.is_terminal() or status == RunStatus.SUCCEEDED:
        head.append(f"{run.progress:.0%} done")
    if run.best_metric is not None:
        head.append(f"best val {monitor} {run.best_metric:.4f}")
    if status == RunStatus.FAILED and run.failure_message:
        head.append(f"failed: {run.failure_message}")
    lines = [" · ".join(head)]
    if df.empty:
        lines.append("No metrics yet: they appear after the first epoch.")
        return "\n\n".join(lines)
    # The newest epoch in numbers too: a chart of one epoch is a single point, hard to see.
    epochs_seen = df[df["split"].isin(CHART_SPLITS)]["epoch"]
    if not epochs_seen.empty:
        last = int(epochs_seen.max())
        rows = df[(df["epoch"] == last) & df["split"].isin(CHART_SPLITS) & (df["name"] != "lr")]
        values = " · ".join(f"{r.split} {r.name} {r.value:.4f}" for r in rows.itertuples())
        lines.append(f"Epoch {last}: {values}")
    test = df[(df["split"] == "test") & (df["name"] != "lr")].drop_duplicates("name", keep="last")
    if not test.empty:
        lines.append("Test: " + " · ".join(f"{r.name} {r.value:.4f}" for r in test.itertuples()))
    return "\n\n".join(lines)


def compare_frame(ctx: UIContext, run_ids: list[int], metric: str) -> pd.DataFrame:
    split, _, name = (metric or "").partition("/")
    if f"{split}/{name}" not in COMPARE_METRICS:
        raise gr.Error(f"metric {metric!r} is not one of {', '.join(COMPARE_METRICS)}")
    with ctx.platform.session() as s:
        labels = {}
        for rid in run_ids:
            run = runs.get_run(s, rid)
            labels[rid] = f"#{run.id} {run.name}"
        rows = s.exec(
            select(Metric)
            .where(
                col(Metric.run_id).in_(run_ids),
                Metric.split == split,
                Metric.name == name,
                col(Metric.epoch).is_not(None),
            )
            .order_by(col(Metric.id))
        ).all()
    df = typed_frame(
        COMPARE_COLUMNS,
        [{"epoch": m.epoch, "value": m.value, "run": labels[m.run_id]} for m in rows],
    )
    if df.empty:
        return df
    df = df.drop_duplicates(["run", "epoch"], keep="last").astype({"epoch": int})
    return df.sort_values(["run", "epoch"], kind="stable").reset_index(drop=True)


def read_confusion(run_dir: str | None, source: str) -> tuple[list[str], list[list[int]], dict]:
    """(class names, confusion rows = true class, per-class accuracy) of the best checkpoint on
    val, or of the test set; raises gr.Error saying what is missing."""
    if not run_dir:
        raise gr.Error("this run has not started yet: no run folder")
    folder = Path(run_dir)
    if source == "val":
        best = find_checkpoint(folder / "checkpoints", "best")
        if best is None:
            raise gr.Error("no best checkpoint yet: it is written after the first epoch")
        info = json.loads((best / INFO_FILE).read_text()) if (best / INFO_FILE).exists() else {}
        classes, matrix, per_class = (
            info.get("classes"),
            info.get("confusion"),
            info.get("per_class_accuracy"),
        )
    elif source == "test":
        path = folder / "results.json"
        if not path.exists():
            raise gr.Error("no test results yet: results.json is written when the run finishes")
        results = json.loads(path.read_text())
        test = results.get("test") or {}
        if not test:
            raise gr.Error("this run's dataset has no test/ split, so there are no test results")
        classes, matrix, per_class = (
            results.get("classes"),
            test.get("confusion"),
            test.get("per_class_accuracy"),
        )
    else:
        raise gr.Error(f"source must be 'val' or 'test' (got {source!r})")
    if not classes or not matrix:
        raise gr.Error(f"{folder}: no confusion matrix recorded for {source}")
    return list(map(str, classes)), matrix, dict(per_class or {})


def confusion_styler(classes: list[str], matrix: list[list[int]]) -> Any:
    """The matrix as a table shaded like a heatmap (rows: true class, columns: predicted),
    each row scaled by its own total so small classes show their mistakes too. Plain CSS:
    pandas' `background_gradient` would need matplotlib, which trainyard does not install."""
    counts = pd.DataFrame(matrix, columns=classes)
    share = counts.div(counts.sum(axis=1).replace(0, 1), axis=0)

    def css(v: float, diagonal: bool) -> str:
        if v <= 0:
            return ""
        rgb = "37, 99, 235" if diagonal else "220, 38, 38"  # blue: right; red: mistakes
        alpha = 0.15 + 0.85 * v
        return f"background-color: rgba({rgb}, {alpha:.2f});" + (
            " color: white;" if alpha > 0.6 else ""
        )

    styles = [
        ["font-weight: 600;"] + [css(share.iat[i, j], i == j) for j in range(len(classes))]
        for i in range(len(classes))
    ]
    shown = counts.copy()
    shown.insert(0, CONFUSION_CORNER, classes)
    return shown.style.apply(lambda _: np.array(styles, dtype=object), axis=None)


def per_class_frame(classes: list[str], per_class: dict[str, float]) -> pd.DataFrame | None:
    """Per-class accuracy for the bar chart, or None (see `chart_frame`)."""
    rows = [{"class": c, "accuracy": float(per_class[c])} for c in classes if c in per_class]
    return typed_frame(PER_CLASS_COLUMNS, rows) if rows else None


def empty_confusion() -> pd.DataFrame:
    return pd.DataFrame(columns=[CONFUSION_CORNER])


def _as_series(df: Any) -> pd.DataFrame:
    """The table's value as it comes back from the browser (numbers may arrive as text)."""
    if not isinstance(df, pd.DataFrame) or df.empty or set(SERIES_COLUMNS) - set(df.columns):
        return typed_frame(SERIES_COLUMNS)
    out = df[SERIES_COLUMNS].copy()
    out["epoch"] = pd.to_numeric(out["epoch"], errors="coerce")
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    return out.dropna(subset=["epoch", "value"])


def _compare_plot(df: Any) -> pd.DataFrame | None:
    """The compare table's value as it comes back from the browser, for the chart."""
    if not isinstance(df, pd.DataFrame) or df.empty or set(COMPARE_COLUMNS) - set(df.columns):
        return None
    out = df[COMPARE_COLUMNS].copy()
    out["epoch"] = pd.to_numeric(out["epoch"], errors="coerce")
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    out = out.dropna(subset=["epoch", "value"])
    return out.astype({"epoch": int, "run": "str"}) if not out.empty else None


# ---- the tab -------------------------------------------------------------------------------


def create_metrics_tab(
    ctx: UIContext, project: gr.Dropdown, selected_run: gr.State
) -> dict[str, Any]:
    with gr.Row():
        run = dynamic_dropdown(label="Run", elem_id="ty-metrics-run", value=None, scale=5)
        refresh = gr.Button("Refresh", scale=0, min_width=120)
    summary = gr.Markdown("Choose a run.")
    plots = []
    for row in (CHARTS[:2], CHARTS[2:]):
        with gr.Row():
            for title, _ in row:
                plots.append(
                    gr.LinePlot(
                        None,
                        x="epoch",
                        y="value",
                        color="split",
                        title=title,
                        y_title=title.lower(),
                        color_map={"train": "#2563eb", "val": "#ea580c"},
                        height=260,
                        tooltip="all",
                        elem_id=f"ty-chart-{title.lower().replace(' ', '-')}",
                    )
                )
    with gr.Accordion("Metric values", open=False):
        table = gr.Dataframe(
            typed_frame(SERIES_COLUMNS),
            interactive=False,
            label="Per epoch and split",
            elem_id="ty-metric-values",
        )
    signature = gr.State(None)  # per session: what the live timer last showed
    timer = gr.Timer(LIVE_PERIOD_S, active=False)

    gr.Markdown("### Confusion matrix and per-class accuracy")
    with gr.Row():
        source = gr.Radio(CONFUSION_SOURCES, value="val", label="Of", scale=3)
        show_confusion = gr.Button("Show", scale=0, min_width=120)
    confusion_note = gr.Markdown()
    with gr.Row():
        confusion = gr.Dataframe(
            empty_confusion(),
            interactive=False,
            label="Confusion matrix (rows: true class)",
            scale=3,
        )
        per_class = gr.BarPlot(
            None,
            x="class",
            y="accuracy",
            title="Per-class accuracy",
            y_lim=[0, 1],
            sort="x",
            height=320,
            scale=2,
        )

    gr.Markdown("### Compare runs")
    with gr.Row():
        compare_ids = dynamic_dropdown(
            label="Runs", elem_id="ty-compare-runs", value=[], multiselect=True, scale=4
        )
        compare_metric = gr.Dropdown(
            label="Metric", choices=COMPARE_METRICS, value="val/accuracy", scale=2
        )
        compare_btn = gr.Button("Compare", variant="primary", scale=0, min_width=120)
    compare_plot = gr.LinePlot(
        None,
        x="epoch",
        y="value",
        color="run",
        title="Compared runs",
        height=320,
        tooltip="all",
    )
    with gr.Accordion("Compared values", open=False):
        compare_table = gr.Dataframe(
            typed_frame(COMPARE_COLUMNS), interactive=False, label="Compared values"
        )

    # ---- handlers: thin, all reads through the platform's session ----

    @user_errors
    def metric_series(run_id: Any) -> pd.DataFrame:
        if run_id in (None, ""):  # a project without runs: nothing to show, nothing wrong
            return typed_frame(SERIES_COLUMNS)
        rid = require_run(run_id)
        with ctx.platform.session() as s:
            runs.get_run(s, rid)  # a clear "no run with id N" rather than an empty chart
            return metric_frame(runlogs.metric_series(s, rid))

    @user_errors
    def render(run_id: Any, df: Any) -> tuple[Any, ...]:
        """Summary, charts and live-timer state for the metric rows in `df`."""
        if run_id in (None, ""):
            charts = [None for _ in CHARTS]
            return ("Choose a run.", *charts, None, gr.Timer(active=False))
        rid = require_run(run_id)
        df = _as_series(df)
        with ctx.platform.session() as s:
            r = runs.get_run(s, rid)
        live = not RunStatus(r.status).is_terminal()
        return (
            run_summary(r, df),
            *[chart_frame(df, n) for _, n in CHARTS],
            metric_signature(ctx, rid),
            gr.Timer(active=live),
        )

    @user_errors
    def confusion_matrix(run_id: Any, source: Any) -> tuple[Any, pd.DataFrame | None, str]:
        if run_id in (None, ""):
            return empty_confusion(), None, ""
        rid = require_run(run_id)
        with ctx.platform.session() as s:
            r = runs.get_run(s, rid)
        try:
            classes, matrix, acc = read_confusion(r.run_dir, str(source or "val"))
        except gr.Error as e:  # nothing to show yet is a note, not an error dialog
            return empty_confusion(), None, str(e.message)
        total = sum(map(sum, matrix))
        right = sum(matrix[i][i] for i in range(len(matrix)))
        what = "test set" if source == "test" else "validation set, best checkpoint"
        note = f"{what}: {right} of {total} right ({right / max(total, 1):.1%})"
        return confusion_styler(classes, matrix), per_class_frame(classes, acc), note

    n_live = 1 + 1 + len(CHARTS) + 2 + 3  # table, summary, charts, signature, timer, confusion

    @user_errors
    def live(run_id: Any, last: Any, source: Any) -> tuple[Any, ...]:
        """Timer tick: two indexed lookups; redraw only when the run has news."""
        if run_id in (None, ""):
            return (*[gr.skip()] * (n_live - 4), gr.Timer(active=False), *[gr.skip()] * 3)
        rid = require_run(run_id)
        try:
            if metric_signature(ctx, rid) == last:
                return tuple(gr.skip() for _ in range(n_live))
        except NotFound:  # deleted meanwhile: stop polling rather than complain every tick
            return (*[gr.skip()] * (n_live - 4), gr.Timer(active=False), *[gr.skip()] * 3)
        df = metric_series(rid)
        return (df, *render(rid, df), *confusion_matrix(rid, source))

    @user_errors
    def compare_runs(run_ids: Any, metric: Any) -> pd.DataFrame:
        ids = run_id_list(run_ids)
        if not ids:
            raise gr.Error("choose one or more runs to compare")
        if len(ids) > MAX_COMPARE_RUNS:
            raise gr.Error(f"compare at most {MAX_COMPARE_RUNS} runs at once (got {len(ids)})")
        return compare_frame(ctx, ids, str(metric or ""))

    @user_errors
    def follow_selected(run_id: Any, project_id: Any) -> Any:
        if run_id in (None, ""):
            return gr.skip()
        pid = int(project_id) if project_id not in (None, "") else None
        return gr.update(choices=run_choices(ctx, pid), value=int(run_id))

    @user_errors
    def on_project(project_id: Any) -> tuple[Any, Any]:
        choices, first = project_runs(ctx, project_id)
        return gr.update(choices=choices, value=first), gr.update(choices=choices, value=[])

    @user_errors
    def refresh_choices(project_id: Any, run_id: Any, compared: Any) -> tuple[Any, Any]:
        choices = run_choices(ctx, int(project_id)) if project_id not in (None, "") else []
        return gr.update(choices=choices, value=run_id), gr.update(choices=choices, value=compared)

    render_to = [summary, *plots, signature, timer]
    confusion_to = [confusion, per_class, confusion_note]
    # The named endpoints first: a private event registered earlier with the same function
    # would take its name (Gradio names events after their function), leaving "name_1".
    show_confusion.click(confusion_matrix, [run, source], confusion_to, api_name="confusion_matrix")
    compare_btn.click(
        compare_runs, [compare_ids, compare_metric], [compare_table], api_name="compare_runs"
    ).success(_compare_plot, [compare_table], [compare_plot], api_visibility="private")
    # Picking a run (or Refresh): the rows, then what is drawn from them.
    run.change(metric_series, [run], [table], api_name="metric_series").success(
        render, [run, table], render_to, api_visibility="private"
    ).success(confusion_matrix, [run, source], confusion_to, api_visibility="private")
    refresh.click(
        refresh_choices, [project, run, compare_ids], [run, compare_ids], api_visibility="private"
    ).success(metric_series, [run], [table], api_visibility="private").success(
        render, [run, table], render_to, api_visibility="private"
    ).success(confusion_matrix, [run, source], confusion_to, api_visibility="private")
    timer.tick(
        live, [run, signature, source], [table, *render_to, *confusion_to], api_visibility="private"
    )
    source.change(confusion_matrix, [run, source], confusion_to, api_visibility="private")
    selected_run.change(follow_selected, [selected_run, project], [run], api_visibility="private")
    return {
        "run": run,
        "table": table,
        "plots": plots,
        "on_project": [(on_project, [run, compare_ids])],
    }
