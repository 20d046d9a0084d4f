"""Logs: a live tail of one run (new lines within about a second), search, download.

Each browser session keeps (run id, last sequence number) in a gr.State and asks the
database only for lines after it, so a second's refresh costs one index range scan.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from sqlmodel import col, select

from trainyard.platform import runlogs, runs
from trainyard.platform.models import RunLog
from trainyard.platform.status import RunStatus
from trainyard.ui.common import (
    UIContext,
    dynamic_dropdown,
    project_runs,
    require_run,
    run_choices,
    user_errors,
)

TAIL_LINES = 1000  # what the textbox holds; the whole log is a download away
REFRESH_S = 1.0
SEARCH_LIMIT = 500


# After a frame: the text (or the tab) has been rendered by then.
SCROLL_TO_END = (
    "() => { setTimeout(() => { const t = document.querySelector('#ty-log textarea'); "
    "if (t) t.scrollTop = t.scrollHeight; }, 100); }"
)


def _tail(ctx: UIContext, run_id: int, n: int) -> tuple[str, int]:
    with ctx.platform.session() as s:
        runs.get_run(s, run_id)
        rows = runlogs.tail(s, run_id, n)
    return "\n".join(r.line for r in rows), (rows[-1].seq if rows else -1)


def create_logs_tab(ctx: UIContext, project: gr.Dropdown, selected_run: gr.State) -> dict[str, Any]:
    # (run id, last seq shown, text shown) for this browser session only.
    follow = gr.State((None, -1, ""))
    with gr.Row():
        run = dynamic_dropdown(label="Run", choices=[], scale=3, elem_id="ty-logs-run")
        live = gr.Checkbox(
            label="Live", value=True, scale=1, info="New lines appear as the run writes them."
        )
        download = gr.DownloadButton("Download whole log", scale=1)
    log_box = gr.Textbox(
        label="Log (last 1,000 lines; scroll up to stop following)",
        lines=24,
        max_lines=24,
        autoscroll=True,
        elem_classes=["ty-log"],
        elem_id="ty-log",
    )
    with gr.Row():
        query = gr.Textbox(label="Search the whole log", placeholder="e.g. val acc, error", scale=4)
        search = gr.Button("Search", scale=1)
    results = gr.Textbox(label="Matching lines", lines=8, max_lines=20, elem_classes=["ty-log"])
    # Ticks only while a live run is shown: a finished run's log cannot grow.
    timer = gr.Timer(REFRESH_S, active=False)

    @user_errors
    def get_log(run_id: Any, lines: float = 200) -> str:
        """The last `lines` lines of a run's log (API)."""
        text, _ = _tail(ctx, require_run(run_id), int(lines or 200))
        return text

    def open_run(run_id: Any, is_live: bool) -> tuple[Any, ...]:
        if run_id in (None, ""):
            return "", (None, -1, ""), gr.Timer(active=False)
        text, last = _tail(ctx, int(run_id), TAIL_LINES)
        with ctx.platform.session() as s:
            done = RunStatus(runs.get_run(s, int(run_id)).status).is_terminal()
        return text, (int(run_id), last, text), gr.Timer(active=is_live and not done)

    def tick(state: tuple[Any, int, str], is_live: bool) -> tuple[Any, ...]:
        run_id, last, text = state
        if run_id is None or not is_live:
            return gr.skip(), state, gr.Timer(active=False)
        with ctx.platform.session() as s:
            # Status before lines: a run's last lines are stored before it ends, so a run
            # that had ended before this read has no line left to come after it.
            done = RunStatus(runs.get_run(s, run_id).status).is_terminal()
            new = runlogs.lines_after(s, run_id, last, limit=TAIL_LINES)
        if not new:
            return gr.skip(), state, (gr.Timer(active=False) if done else gr.skip())
        lines = (text.split("\n") if text else []) + [r.line for r in new]
        text = "\n".join(lines[-TAIL_LINES:])
        return text, (run_id, new[-1].seq, text), gr.skip()

    @user_errors
    def search_log(run_id: Any, q: str) -> str:
        rid = require_run(run_id)
        q = (q or "").strip()
        if not q:
            raise gr.Error("type something to search for")
        with ctx.platform.session() as s:
            rows = s.exec(
                select(RunLog)
                .where(RunLog.run_id == rid, col(RunLog.line).contains(q, autoescape=True))
                .order_by(col(RunLog.seq))
                .limit(SEARCH_LIMIT)
            ).all()
        if not rows:
            return f"no line contains {q!r}"
        shown = [f"{r.seq + 1:>7}  {r.line}" for r in rows]
        more = f"\n(first {SEARCH_LIMIT} matches)" if len(rows) == SEARCH_LIMIT else ""
        return "\n".join(shown) + more

    @user_errors
    def download_log(run_id: Any) -> str:
        rid = require_run(run_id)
        with ctx.platform.session() as s:
            run = runs.get_run(s, rid)
            rows = runlogs.lines_after(s, rid, -1, limit=10**9)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", run.name)[:60]
        out = Path(tempfile.mkdtemp(prefix="trainyard-log-")) / f"run-{rid}-{safe}.log"
        out.write_text("".join(r.line + "\n" for r in rows))
        return str(out)

    def follow_selected(run_id: Any, project_id: Any) -> Any:
        return gr.update(choices=run_choices(ctx, project_id), value=run_id)

    # A run just opened shows its newest lines: the box's autoscroll follows appended lines,
    # not a whole new text, so a finished run's log would otherwise open at its first line.
    run.change(open_run, [run, live], [log_box, follow, timer], api_visibility="private").then(
        None, js=SCROLL_TO_END
    )
    selected_run.change(follow_selected, [selected_run, project], [run], api_visibility="private")
    timer.tick(
        tick,
        [follow, live],
        [log_box, follow, timer],
        api_visibility="private",
        show_progress="hidden",
    )
    # Ticking Live again also picks up a run that was retried after it had ended.
    live.change(
        lambda is_live, state: gr.Timer(active=bool(is_live and state[0] is not None)),
        [live, follow],
        [timer],
        api_visibility="private",
    )
    search.click(search_log, [run, query], [results], api_name="search_log")
    query.submit(search_log, [run, query], [results], api_visibility="private")
    download.click(download_log, [run], [download], api_name="download_log")
    # An API-only endpoint: the last N lines of any run.
    gr.api(get_log, api_name="get_log")

    @user_errors
    def on_project(project_id: Any) -> Any:
        # As Metrics and Model testing do: the newest run that has started is shown at once,
        # not an empty log box with nothing saying to pick a run.
        choices, first = project_runs(ctx, project_id)
        return gr.update(choices=choices, value=first)

    run.focus(
        lambda p, r: gr.update(choices=run_choices(ctx, p), value=r),
        [project, run],
        [run],
        api_visibility="private",
    )
    return {"on_project": [(on_project, [run])]}
