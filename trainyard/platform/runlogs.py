"""Run logs and metrics in the database, written in batches and read by sequence number.

The UI reads only these tables, so logs and charts survive Ray and app restarts. Lines are
numbered per run across attempts (`seq` 0, 1, 2, ... without gaps); the run row remembers how
many lines of the current attempt's Ray log are stored, in the same transaction as the lines,
so a follower that restarts continues exactly where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from trainyard.platform.models import Metric, Run, RunLog, utcnow
from trainyard.trainer.events import parse_event

MAX_LINE_CHARS = 10_000  # a runaway line (a tensor printed whole) must not bloat the table


@dataclass
class Ingested:
    lines: int
    metrics: int
    events: list[dict[str, Any]]


def ingest_lines(session: Session, run: Run, lines: list[str]) -> Ingested:
    """Store complete lines of the current attempt and the metrics their events carry.
    Updates the run's counters and progress; the caller commits."""
    if not lines:
        return Ingested(0, 0, [])
    now = utcnow()
    start = run.log_lines
    session.execute(
        insert(RunLog),
        [
            {
                "run_id": run.id,
                "seq": start + i,
                "attempt": run.attempt,
                "time": now,
                "line": line[:MAX_LINE_CHARS],
            }
            for i, line in enumerate(lines)
        ],
    )
    events = [e for e in map(parse_event, lines) if e is not None]
    metric_rows = []
    for ev in events:
        metric_rows.extend(_metric_rows(run, ev, now))
        _apply_event(run, ev)
    if metric_rows:
        session.execute(insert(Metric), metric_rows)
    run.log_lines += len(lines)
    run.attempt_log_lines += len(lines)
    session.add(run)
    return Ingested(len(lines), len(metric_rows), events)


def _metric_rows(run: Run, ev: dict[str, Any], now: Any) -> list[dict[str, Any]]:
    if ev["event"] != "metrics" or not isinstance(ev.get("values"), dict):
        return []
    rows = [
        {
            "run_id": run.id,
            "epoch": ev.get("epoch"),
            "step": None,
            "split": ev.get("split", ""),
            "name": name,
            "value": float(value),
            "time": now,
        }
        for name, value in ev["values"].items()
        if isinstance(value, int | float)
    ]
    if ev.get("split") == "train" and isinstance(ev.get("lr"), int | float):
        rows.append(
            {
                "run_id": run.id,
                "epoch": ev.get("epoch"),
                "step": None,
                "split": "train",
                "name": "lr",
                "value": float(ev["lr"]),
                "time": now,
            }
        )
    return rows


def _apply_event(run: Run, ev: dict[str, Any]) -> None:
    kind = ev["event"]
    if kind == "progress" and ev.get("total_steps"):
        run.progress = min(1.0, float(ev["global_step"]) / float(ev["total_steps"]))
        run.epoch = ev.get("epoch")
    elif kind == "metrics" and ev.get("split") == "val":
        run.epoch = ev.get("epoch")
        monitor = run.config.get("loop", {}).get("monitor", "accuracy")
        value = (ev.get("values") or {}).get(monitor)
        if isinstance(value, int | float) and _improves(float(value), run.best_metric, monitor):
            run.best_metric = float(value)


def _improves(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value < best if monitor == "loss" else value > best


def tail(session: Session, run_id: int, n: int = 200) -> list[RunLog]:
    """The last `n` lines, oldest first (an index range scan on (run_id, seq))."""
    stmt = select(RunLog).where(RunLog.run_id == run_id).order_by(col(RunLog.seq).desc()).limit(n)
    return list(reversed(session.exec(stmt).all()))


def lines_after(session: Session, run_id: int, after_seq: int, limit: int = 5000) -> list[RunLog]:
    """Lines with seq > after_seq, for live followers that already hold the earlier ones."""
    stmt = (
        select(RunLog)
        .where(RunLog.run_id == run_id, col(RunLog.seq) > after_seq)
        .order_by(col(RunLog.seq))
        .limit(limit)
    )
    return list(session.exec(stmt))


def metric_series(session: Session, run_id: int) -> list[Metric]:
    stmt = select(Metric).where(Metric.run_id == run_id).order_by(col(Metric.id))
    return list(session.exec(stmt))
