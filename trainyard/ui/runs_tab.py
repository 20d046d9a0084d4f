"""Runs: the table (live), submit from a stored config, cancel, retry, pick a run to inspect."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import gradio as gr
import pandas as pd

from trainyard.platform import configs, runs
from trainyard.platform.models import Run
from trainyard.platform.status import RunStatus
from trainyard.ui.common import (
    UIContext,
    ago,
    dynamic_dropdown,
    require_project,
    require_run,
    run_choices,
    user_errors,
)

COLUMNS = [
    "id",
    "name",
    "status",
    "progress",
    "epoch",
    "best",
    "devices",
    "node",
    "attempt",
    "age",
    "note",
]
REFRESH_S = 2.0


def _row(r: Run, now: datetime) -> dict[str, Any]:
    created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
    note = ""
    if r.failure_reason:
        note = f"{r.failure_reason}: {r.failure_message or ''}"
    elif r.cancel_requested and not RunStatus(r.status).is_terminal():
        note = "cancelling"
    elif r.failure_message:
        note = r.failure_message
    return {
        "id": r.id,
        "name": r.name,
        "status": str(r.status),
        "progress": f"{r.progress * 100:.0f}%",
        "epoch": r.epoch if r.epoch is not None else "",
        "best": f"{r.best_metric:.4f}" if r.best_metric is not None else "",
        "devices": r.devices,
        "node": r.node or "",
        "attempt": r.attempt,
        "age": ago((now - created).total_seconds()),
        "note": note[:160],
    }


def runs_table(
    ctx: UIContext, project_id: Any, statuses: list[str] | None, limit: int = 200
) -> pd.DataFrame:
    pid = int(project_id) if project_id not in (None, "") else None
    wanted = [RunStatus(s) for s in statuses] if statuses else None
    with ctx.platform.session() as s:
        rows = runs.list_runs(s, pid, wanted, limit=int(limit))
    now = datetime.now(UTC)
    return pd.DataFrame([_row(r, now) for r in rows], columns=COLUMNS)


def config_choices(ctx: UIContext, project_id: Any) -> list[tuple[str, int]]:
    if project_id in (None, ""):
        return []
    with ctx.platform.session() as s:
        return [
            (f"{c.name} (v{c.version})", c.id)  # type: ignore[misc]
            for c in configs.list_configs(s, int(project_id))
        ]


def create_runs_tab(ctx: UIContext, project: gr.Dropdown, selected_run: gr.State) -> dict[str, Any]:
    with gr.Accordion("Submit a run", open=True):
        with gr.Row():
            config = dynamic_dropdown(
                label="Config",
                choices=[],
                scale=3,
                info="Saved in the Configs tab; the run freezes a copy.",
            )
            run_name = gr.Textbox(label="Run name (optional)", scale=3)
        with gr.Row():
            priority = gr.Number(
                label="Priority",
                value=0,
                precision=0,
                info="Higher runs first; equal priorities run in order.",
            )
            devices = gr.Number(
                label="Devices",
                value=1,
                precision=0,
                minimum=1,
                info="GPUs (or CPU slots on a CPU-only cluster).",
            )
            retries = gr.Number(
                label="Max retries",
                value=0,
                precision=0,
                minimum=0,
                info="A killed attempt re-runs from its last checkpoint.",
            )
            submit = gr.Button("Run", variant="primary")
    with gr.Row():
        statuses = gr.Dropdown(
            label="Show states",
            choices=[s.value for s in RunStatus],
            multiselect=True,
            value=[],
            scale=3,
        )
        limit = gr.Dropdown(label="Rows", choices=[50, 200, 1000], value=200, scale=1)
        refresh = gr.Button("Refresh", scale=1)
    table = gr.Dataframe(
        value=None,
        interactive=False,
        label="Runs (newest first)",
        max_height=520,
        elem_id="ty-runs-table",
    )
    with gr.Row():
        run = dynamic_dropdown(
            label="Selected run",
            choices=[],
            scale=3,
            elem_id="ty-run-select",
            info="Click a row, or pick here; Logs, Metrics and Model testing follow.",
        )
        cancel = gr.Button("Cancel run", variant="stop", scale=1)
        retry = gr.Button("Retry run", scale=1)
    message = gr.Markdown()
    timer = gr.Timer(REFRESH_S)

    @user_errors
    def do_submit(
        project_id: Any,
        config_id: Any,
        name: str,
        priority: float,
        devices: float,
        max_retries: float,
    ) -> tuple[Any, ...]:
        require_project(project_id)
        if config_id in (None, ""):
            raise gr.Error("choose a config to run (make one in the Configs tab)")
        r = ctx.platform.submit_stored(
            int(config_id),
            name=(name or "").strip() or None,
            priority=int(priority or 0),
            devices=int(devices or 1),
            max_retries=int(max_retries or 0),
        )
        return (
            runs_table(ctx, project_id, None),
            gr.update(choices=run_choices(ctx, project_id), value=r.id),
            r.id,
            f"Queued run **#{r.id}** ({r.name}).",
        )

    @user_errors
    def do_cancel(run_id: Any, project_id: Any, st: list[str], lim: int) -> tuple[Any, ...]:
        r = ctx.platform.cancel(require_run(run_id))
        text = (
            "cancelled"
            if r.status == RunStatus.CANCELLED
            else "cancel requested: the job stops within seconds"
        )
        return runs_table(ctx, project_id, st, lim), f"Run **#{r.id}**: {text}."

    @user_errors
    def do_retry(run_id: Any, project_id: Any, st: list[str], lim: int) -> tuple[Any, ...]:
        r = ctx.platform.retry(require_run(run_id))
        return (
            runs_table(ctx, project_id, st, lim),
            f"Run **#{r.id}** queued again; it resumes from its last checkpoint.",
        )

    @user_errors
    def list_runs(project_id: Any, st: list[str], lim: int) -> pd.DataFrame:
        return runs_table(ctx, project_id, st, lim)

    def on_select(evt: gr.SelectData, df: pd.DataFrame) -> tuple[Any, Any]:
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        run_id = int(df.iloc[row]["id"])
        return run_id, run_id

    def on_project(project_id: Any) -> tuple[Any, ...]:
        configs_now = config_choices(ctx, project_id)
        return (
            runs_table(ctx, project_id, None),
            gr.update(choices=configs_now, value=configs_now[0][1] if configs_now else None),
            gr.update(choices=run_choices(ctx, project_id), value=None),
        )

    def tick(project_id: Any, st: list[str], lim: int, current: Any) -> tuple[Any, ...]:
        choices = run_choices(ctx, project_id)
        return runs_table(ctx, project_id, st, lim), gr.update(choices=choices, value=current)

    submit.click(
        do_submit,
        [project, config, run_name, priority, devices, retries],
        [table, run, selected_run, message],
        api_name="submit_run",
    )
    cancel.click(
        do_cancel, [run, project, statuses, limit], [table, message], api_name="cancel_run"
    )
    retry.click(do_retry, [run, project, statuses, limit], [table, message], api_name="retry_run")
    refresh.click(list_runs, [project, statuses, limit], [table], api_name="list_runs")
    statuses.change(list_runs, [project, statuses, limit], [table], api_visibility="private")
    limit.change(list_runs, [project, statuses, limit], [table], api_visibility="private")
    table.select(on_select, [table], [run, selected_run], api_visibility="private")
    run.input(lambda r: r, [run], [selected_run], api_visibility="private")
    timer.tick(
        tick,
        [project, statuses, limit, run],
        [table, run],
        api_visibility="private",
        show_progress="hidden",
    )
    # The Configs tab may add configs at any time: refresh the choices when the list opens.
    config.focus(
        lambda p: gr.update(choices=config_choices(ctx, p)),
        [project],
        [config],
        api_visibility="private",
    )
    return {"on_project": [(on_project, [table, config, run])], "table": table}
