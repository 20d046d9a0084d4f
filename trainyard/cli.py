"""The `trainyard` command: serve the control plane, and script it from a shell.

Commands that only read or write the database (projects, submit, runs, logs, cancel, retry)
work whether or not `serve` (or the app) is running; `serve` is what submits queued runs to
Ray and follows them.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from trainyard.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings.from_env()
    overrides: dict[str, Any] = {}
    for flag, fieldname in (
        ("db_url", "db_url"),
        ("storage", "storage_dir"),
        ("datasets_dir", "datasets_dir"),
        ("ray_address", "ray_address"),
        ("num_gpus", "num_gpus"),
    ):
        value = getattr(args, flag, None)
        if value not in (None, ""):
            overrides[fieldname] = Path(value) if fieldname.endswith("_dir") else value
    return dataclasses.replace(s, **overrides)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db-url", help="SQLAlchemy URL (default: TRAINYARD_DB_URL or SQLite)")
    p.add_argument("--storage", help="storage root for runs (default: TRAINYARD_STORAGE_DIR)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trainyard", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    demo = sub.add_parser("demo-data", help="write the digits demo dataset")
    demo.add_argument("--datasets-dir", help="default: TRAINYARD_DATASETS_DIR or ./datasets")
    demo.add_argument("--force", action="store_true", help="rewrite it even if it exists")

    serve = sub.add_parser("serve", help="run the control loop (queue -> Ray jobs) headless")
    _add_common(serve)
    serve.add_argument("--ray-address", help="join this Ray cluster (default: embedded head)")
    serve.add_argument("--num-gpus", type=int, help="GPUs the embedded head advertises")

    proj = sub.add_parser("projects", help="list projects, or create one")
    _add_common(proj)
    proj.add_argument("--create", metavar="NAME", help="create a project")

    submit = sub.add_parser("submit", help="queue a run from a config file")
    _add_common(submit)
    submit.add_argument("config", help="YAML or JSON TrainConfig")
    submit.add_argument("--project", required=True, help="project name (created if missing)")
    submit.add_argument("--name", help="run name")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first")
    submit.add_argument("--devices", type=int, default=1, help="GPUs (or CPU slots) to use")
    submit.add_argument(
        "--max-retries",
        type=int,
        default=0,
        help="re-run a killed attempt from its checkpoint this many times",
    )
    submit.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (repeatable)",
    )

    ls = sub.add_parser("runs", help="list runs")
    _add_common(ls)
    ls.add_argument("--project", help="only this project")
    ls.add_argument("--status", action="append", help="only these states (repeatable)")
    ls.add_argument("--limit", type=int, default=50)

    logs = sub.add_parser("logs", help="print a run's log")
    _add_common(logs)
    logs.add_argument("run", type=int)
    logs.add_argument("-n", "--lines", type=int, default=200, help="last N lines (0: all)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    for name, text in (
        ("cancel", "cancel a queued or running run"),
        ("retry", "queue a failed or cancelled run again (it resumes)"),
    ):
        c = sub.add_parser(name, help=text)
        _add_common(c)
        c.add_argument("run", type=int)

    cl = sub.add_parser("cluster", help="nodes, devices and the queue")
    _add_common(cl)
    cl.add_argument("--ray-address", help="dashboard address (default: the local head)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trainyard.log_config import setup_logging

    setup_logging()
    settings = _settings(args)
    settings.apply_process_env()
    from trainyard.platform.errors import PlatformError
    from trainyard.platform.ray_cluster import RayClusterError
    from trainyard.trainer.config import ConfigError

    try:
        return COMMANDS[args.cmd](args, settings)
    except (PlatformError, ConfigError, RayClusterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _open(settings: Settings, with_ray: bool = False) -> Any:
    from trainyard.platform.service import Platform

    return Platform.open(settings, with_ray=with_ray, start_loop=False)


def cmd_demo_data(args: argparse.Namespace, settings: Settings) -> int:
    from trainyard.demo_data import make_digits

    path = make_digits(args.datasets_dir or settings.datasets_dir, force=args.force)
    print(f"digits demo dataset: {path}")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from trainyard.platform.service import Platform

    plat = Platform.open(settings, with_ray=True, start_loop=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    assert plat.control is not None
    print(
        f"trainyard control loop running (database {settings.database_url}); Ctrl-C stops it",
        flush=True,
    )
    try:
        while not stop.is_set():
            try:
                plat.control.tick()
            except Exception as e:  # keep serving; the next tick retries
                print(f"tick failed: {e}", file=sys.stderr, flush=True)
            stop.wait(1.0)
    finally:
        plat.close()
    return 0


def cmd_projects(args: argparse.Namespace, settings: Settings) -> int:
    from trainyard.platform import projects

    plat = _open(settings)
    with plat.session() as s:
        if args.create:
            p = projects.create_project(s, args.create)
            print(f"created project {p.name} (id {p.id})")
            return 0
        for p in projects.list_projects(s):
            counts = projects.run_counts(s, p.id or 0)
            summary = ", ".join(f"{n} {k.lower()}" for k, n in counts.items() if n)
            print(f"{p.id:>4}  {p.name}  {summary or 'no runs'}")
    return 0


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from trainyard.platform import runs
    from trainyard.platform.ray_backend import cluster_devices_or_none
    from trainyard.trainer.config import TrainConfig

    cfg = TrainConfig.load(args.config, args.overrides)
    plat = _open(settings, with_ray=False)
    project_id = plat.ensure_project(args.project)
    body = plat.absolute_data_root(cfg.to_dict())
    with plat.session() as s:
        run = runs.submit_run(
            s,
            project_id,
            body,
            name=args.name,
            priority=args.priority,
            devices=args.devices,
            max_retries=args.max_retries,
            cluster_devices=cluster_devices_or_none(settings),
        )
        print(
            f"queued run {run.id} ({run.name}) in project {args.project}, "
            f"priority {run.priority}, {run.devices} device(s)"
        )
    return 0


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    from trainyard.platform import projects, runs
    from trainyard.platform.status import RunStatus

    plat = _open(settings)
    with plat.session() as s:
        project_id = projects.find_project(s, args.project).id if args.project else None
        statuses = [RunStatus(x.upper()) for x in args.status] if args.status else None
        rows = runs.list_runs(s, project_id, statuses, limit=args.limit)
    print(f"{'id':>5}  {'status':<10} {'prio':>4} {'dev':>3} {'progress':>8} {'best':>7}  name")
    for r in rows:
        best = f"{r.best_metric:.4f}" if r.best_metric is not None else "-"
        print(
            f"{r.id:>5}  {r.status:<10} {r.priority:>4} {r.devices:>3} "
            f"{r.progress * 100:>7.0f}% {best:>7}  {r.name}"
            + (f"  [{r.failure_reason}: {r.failure_message}]" if r.failure_reason else "")
        )
    return 0


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    from trainyard.platform import runlogs, runs

    plat = _open(settings)
    with plat.session() as s:
        runs.get_run(s, args.run)
        lines = (
            runlogs.tail(s, args.run, args.lines)
            if args.lines
            else runlogs.lines_after(s, args.run, -1, limit=10**9)
        )
    for row in lines:
        print(row.line)
    last = lines[-1].seq if lines else -1
    while args.follow:
        time.sleep(1.0)
        with plat.session() as s:
            new = runlogs.lines_after(s, args.run, last)
            ended = runs.get_run(s, args.run).status in ("SUCCEEDED", "FAILED", "CANCELLED")
        for row in new:
            print(row.line, flush=True)
            last = row.seq
        if ended and not new:
            break
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    run = _open(settings).cancel(args.run)
    state = "cancelled" if run.status == "CANCELLED" else "cancel requested (the job stops shortly)"
    print(f"run {run.id}: {state}")
    return 0


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    run = _open(settings).retry(args.run)
    print(f"run {run.id}: queued again (attempt {run.attempt + 1} will resume from its checkpoint)")
    return 0


def cmd_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from trainyard.platform import runs
    from trainyard.platform.ray_backend import describe_cluster

    if args.ray_address:
        settings = dataclasses.replace(settings, ray_address=args.ray_address)
    print(describe_cluster(settings))
    plat = _open(settings)
    with plat.session() as s:
        active = runs.active_runs(s)
        queued = runs.queued_runs(s)
    print(
        f"queue: {len(queued)} waiting, {len(active)} active "
        f"({sum(r.devices for r in active)} devices busy)"
    )
    return 0


COMMANDS = {
    "demo-data": cmd_demo_data,
    "serve": cmd_serve,
    "projects": cmd_projects,
    "submit": cmd_submit,
    "runs": cmd_runs,
    "logs": cmd_logs,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
    "cluster": cmd_cluster,
}


if __name__ == "__main__":
    sys.exit(main())
