"""Control-plane benchmark: database at scale, and the cost of going through Ray.

    python bench/control_plane.py [--db-url URL] [--runs 10000] [--lines 1000000] [--ray]

Part A (database, always): log ingestion lines/s through `runlogs.ingest_lines` (batched)
against one commit per line (the naive baseline, measured on a sample); with RUNS runs and
LINES log lines stored, the run-list query and the last 200 lines of one run, against a naive
read of the whole log. Part B (`--ray`): time from submit to the first training step and to
completion, through the queue and a Ray job, against starting the trainer directly with the
same config, on a warm local Ray cluster. Every figure is the median of several repetitions;
both sides of each ratio are measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from trainyard.platform import projects, runlogs, runs
from trainyard.platform.db import make_engine, migrate
from trainyard.platform.models import Run, RunLog, utcnow
from trainyard.platform.status import RunStatus

REPO = Path(__file__).resolve().parent.parent

CONFIG = {"data": {"root": "datasets/digits"}, "loop": {"epochs": 2}}


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_database(url: str, n_runs: int, n_lines: int) -> dict[str, float]:
    engine = make_engine(url)
    migrate(engine)
    with Session(engine) as s:
        project = projects.create_project(s, f"bench-{time.time_ns()}")
        s.commit()
        pid = project.id
        assert pid is not None
        # 10,000 runs, inserted in bulk (their creation is not what is measured).
        now = utcnow()
        s.execute(
            insert(Run),
            [
                {
                    "project_id": pid,
                    "name": f"run {i}",
                    "config": CONFIG,
                    "status": RunStatus.SUCCEEDED,
                    "priority": 0,
                    "devices": 1,
                    "max_retries": 0,
                    "attempt": 1,
                    "progress": 1.0,
                    "log_lines": 0,
                    "attempt_log_lines": 0,
                    "created_at": now,
                    "cancel_requested": False,
                }
                for i in range(n_runs)
            ],
        )
        s.commit()
        target = runs.submit_run(s, pid, CONFIG, name="bench target")
        runs.set_status(s, target, RunStatus.STARTING)
        s.commit()
        line = "epoch 3/10  step 120/351  loss 0.4321  lr 1.00e-03  1170 img/s  ETA 4m12s"

        # Baseline: one commit per line, on a sample (it is ~100x slower).
        sample = 2000
        t0 = time.perf_counter()
        for i in range(sample):
            s.add(RunLog(run_id=target.id, seq=10**9 + i, line=line))  # type: ignore[arg-type]
            s.commit()
        naive_rate = sample / (time.perf_counter() - t0)
        s.execute(RunLog.__table__.delete().where(col(RunLog.seq) >= 10**9))  # type: ignore[attr-defined]
        s.commit()

        # Batched ingestion, as the follower does it: 5,000 lines per transaction.
        batch = [line] * 5000
        t0 = time.perf_counter()
        for _ in range(n_lines // len(batch)):
            runlogs.ingest_lines(s, target, batch)
            s.commit()
        ingest_rate = n_lines / (time.perf_counter() - t0)

        list_s = median_time(lambda: runs.list_runs(s, pid, limit=200))
        count_s = median_time(lambda: projects.run_counts(s, pid))
        tail_s = median_time(lambda: runlogs.tail(s, target.id, 200))  # type: ignore[arg-type]

        def naive_tail() -> object:
            rows = s.exec(
                select(RunLog).where(RunLog.run_id == target.id).order_by(col(RunLog.seq))
            ).all()
            return rows[-200:]

        naive_tail_s = median_time(naive_tail, repeat=3)
    engine.dispose()
    ui = bench_runs_tab(url, pid, f"run {n_runs - 1}")
    return {
        **ui,
        "naive_lines_per_s": naive_rate,
        "ingest_lines_per_s": ingest_rate,
        "run_list_ms": list_s * 1e3,
        "run_counts_ms": count_s * 1e3,
        "tail_200_ms": tail_s * 1e3,
        "naive_tail_ms": naive_tail_s * 1e3,
    }


def bench_runs_tab(url: str, project_id: int, newest: str) -> dict[str, float]:
    """The Runs tab on that database: the `/list_runs` endpoint through a real server, and,
    with Chromium installed, what a user waits for in the browser (`_browser_runs_tab`)."""
    import dataclasses
    import socket

    from gradio_client import Client

    from trainyard.platform.service import Platform
    from trainyard.settings import Settings
    from trainyard.ui.app import launch
    from trainyard.ui.common import UIContext

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tmp = Path(tempfile.mkdtemp())
    settings = dataclasses.replace(Settings(), db_url=url, storage_dir=tmp, datasets_dir=tmp)
    plat = Platform.open(settings, with_ray=False)
    demo = launch(UIContext(plat), port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        endpoint_s = median_time(lambda: client.predict(project_id, [], 200, api_name="/list_runs"))
        browser = _browser_runs_tab(f"http://127.0.0.1:{port}/", plat, project_id, newest)
    finally:
        demo.close()
        plat.close()
    return {"runs_endpoint_ms": endpoint_s * 1e3} | {k: v * 1e3 for k, v in browser.items()}


BROWSER_FIGURES = {
    "page_ready_ms": "page open to the app's tabs on screen (Gradio's own page load)",
    "page_open_ms": "page open to the Runs tab's rows (the whole page load included)",
    "tab_switch_ms": "click on the Runs tab to its rows",
    "refresh_ms": "Refresh click to a new run's row",
    "filter_ms": "Show states -> STARTING, to the one matching row (the others gone)",
}


def _one_visit(
    page: Any, url: str, plat: Any, project_id: int, newest: str, rep: int
) -> dict[str, float]:
    from playwright.sync_api import expect

    page.set_default_timeout(30_000)
    table = page.locator("#ty-runs-table")
    out: dict[str, float] = {}

    def rows_show(text: str) -> None:
        # visible: Gradio's Dataframe keeps a hidden copy of each cell
        table.get_by_text(text, exact=True).filter(visible=True).first.wait_for()

    def tab(name: str) -> None:
        page.get_by_role("tab", name=name, exact=True).click()

    t0 = time.perf_counter()
    page.goto(url)
    page.get_by_role("tab", name="Runs", exact=True).wait_for()
    out["page_ready_ms"] = time.perf_counter() - t0
    tab("Runs")
    rows_show(newest)
    out["page_open_ms"] = time.perf_counter() - t0

    tab("Projects")
    page.wait_for_timeout(300)
    t0 = time.perf_counter()
    tab("Runs")
    rows_show(newest)
    out["tab_switch_ms"] = time.perf_counter() - t0

    name = f"new run {rep}"
    with plat.session() as s:
        runs.submit_run(s, project_id, CONFIG, name=name)
    t0 = time.perf_counter()
    page.get_by_role("button", name="Refresh", exact=True).click()
    rows_show(name)
    out["refresh_ms"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    page.get_by_label("Show states", exact=True).click()
    page.get_by_role("option", name="STARTING", exact=True).first.click()
    rows_show("bench target")
    expect(table.get_by_text(newest, exact=True).filter(visible=True)).to_have_count(0)
    out["filter_ms"] = time.perf_counter() - t0
    return out


def _browser_runs_tab(
    url: str, plat: Any, project_id: int, newest: str, repeat: int = 5
) -> dict[str, float]:
    """Medians of what a user waits for, each timed from the click (or the page request) to
    the rows on screen in headless Chromium. The table lists the newest 200 of the 10,001 runs."""
    if not Path("/usr/bin/chromium").exists():
        return {k: float("nan") for k in BROWSER_FIGURES}
    from playwright.sync_api import sync_playwright

    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    times: dict[str, list[float]] = {k: [] for k in BROWSER_FIGURES}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        for rep in range(repeat):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for key, seconds in _one_visit(page, url, plat, project_id, newest, rep).items():
                times[key].append(seconds)
            page.close()
        browser.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--db-url", help="default: a temporary SQLite file")
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--ray", action="store_true", help="also measure submit-to-first-step")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db_url or f"sqlite:///{tmp}/bench.db"
        print(f"database: {url.split('@')[-1]}; {args.runs} runs, {args.lines} log lines")
        r = bench_database(url, args.runs, args.lines)
    print(
        f"log ingestion: {r['ingest_lines_per_s']:,.0f} lines/s batched vs "
        f"{r['naive_lines_per_s']:,.0f} lines/s one commit per line "
        f"({r['ingest_lines_per_s'] / r['naive_lines_per_s']:.0f}x)  target >= 50,000"
    )
    print(f"run list (200 of {args.runs}): {r['run_list_ms']:.1f} ms  target < 200 ms")
    print(f"run counts by state: {r['run_counts_ms']:.1f} ms")
    endpoint = f"/list_runs through the server {r['runs_endpoint_ms']:.0f} ms"
    print(f"Runs tab with {args.runs} runs: {endpoint}")
    for key, what in BROWSER_FIGURES.items():
        # The target is the Runs tab's own rendering; the page load is shown beside it.
        target = "" if key.startswith("page_") else "  target < 1000 ms"
        print(f"  Chromium, {what}: {r[key]:.0f} ms{target}")
    print(
        f"last 200 log lines of {args.lines:,}: {r['tail_200_ms']:.1f} ms vs "
        f"{r['naive_tail_ms']:.0f} ms reading the whole log "
        f"({r['naive_tail_ms'] / r['tail_200_ms']:.0f}x)  target < 200 ms"
    )
    if args.ray:
        return bench_ray()
    return 0


def bench_ray() -> int:
    # Filled in with the Ray integration: see trainyard/platform/ray_backend.py.
    print("ray: run `python bench/control_plane_ray.py`", file=sys.stderr)
    return subprocess.call([sys.executable, str(REPO / "bench" / "control_plane_ray.py")])


if __name__ == "__main__":
    sys.exit(main())
