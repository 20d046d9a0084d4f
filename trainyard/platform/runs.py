"""Runs: submit (freeze the config, queue it), the one place status changes, cancel, retry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from trainyard.platform.errors import Conflict, NotFound, PlatformError, Refused
from trainyard.platform.models import Run, utcnow
from trainyard.platform.projects import get_project
from trainyard.platform.status import FailureReason, RunStatus, check_transition
from trainyard.trainer.config import ConfigError, TrainConfig

MAX_DEVICES_PER_RUN = 64


def submit_run(
    session: Session,
    project_id: int,
    config: TrainConfig | dict[str, Any],
    *,
    name: str | None = None,
    priority: int = 0,
    devices: int = 1,
    max_retries: int = 0,
    cluster_devices: int | None = None,
    group_id: int | None = None,
    config_id: int | None = None,
) -> Run:
    """Validate and queue a run. `cluster_devices` is what the whole cluster has: a request
    for more can never start, so it is refused now rather than left queued forever."""
    project = get_project(session, project_id)
    if isinstance(config, dict):
        try:
            config = TrainConfig.from_dict(config)
        except ConfigError as e:
            raise PlatformError(str(e)) from None
    if not 1 <= devices <= MAX_DEVICES_PER_RUN:
        raise PlatformError(f"devices: must be 1 to {MAX_DEVICES_PER_RUN} (got {devices})")
    if not 0 <= max_retries <= 10:
        raise PlatformError(f"max_retries: must be 0 to 10 (got {max_retries})")
    if cluster_devices is not None and devices > cluster_devices:
        raise Refused(
            f"devices: the run asks for {devices} but the whole cluster has {cluster_devices}; "
            f"ask for at most {cluster_devices} or add nodes"
        )
    run = Run(
        project_id=project.id,  # type: ignore[arg-type]
        name=name or f"{config.model.name} on {config.data.root.rstrip('/').split('/')[-1]}",
        config=config.to_dict(),
        priority=priority,
        devices=devices,
        max_retries=max_retries,
        group_id=group_id,
        config_id=config_id,
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int, lock: bool = False) -> Run:
    stmt = select(Run).where(Run.id == run_id)
    if lock:
        stmt = stmt.with_for_update()  # PostgreSQL row lock; SQLite serialises writers anyway
    run = session.exec(stmt).first()
    if run is None:
        raise NotFound(f"no run with id {run_id}")
    return run


def set_status(
    session: Session,
    run: Run,
    new: RunStatus,
    *,
    reason: FailureReason | None = None,
    message: str | None = None,
    now: datetime | None = None,
) -> Run:
    """The one place a run's status changes. Refuses illegal moves; stamps the times."""
    check_transition(RunStatus(run.status), new)
    now = now or utcnow()
    if new == RunStatus.STARTING:
        run.attempt += 1
        run.attempt_log_lines = 0
        run.failure_reason = run.failure_message = None
    if new == RunStatus.RUNNING and run.started_at is None:
        run.started_at = now
    if new == RunStatus.QUEUED:
        run.ended_at = None
        run.submission_id = None
        run.cancel_requested = False
    if new.is_terminal():
        run.ended_at = now
    if new == RunStatus.SUCCEEDED:
        run.progress = 1.0
    if reason is not None or message is not None:
        run.failure_reason, run.failure_message = reason, message
    run.status = new
    session.add(run)
    return run


def queued_runs(session: Session, limit: int = 1000) -> list[Run]:
    """The queue: highest priority first, first come first served within a priority."""
    stmt = (
        select(Run)
        .where(Run.status == RunStatus.QUEUED)
        .order_by(col(Run.priority).desc(), col(Run.id))
        .limit(limit)
    )
    return list(session.exec(stmt))


def active_runs(session: Session) -> list[Run]:
    stmt = select(Run).where(col(Run.status).in_([RunStatus.STARTING, RunStatus.RUNNING]))
    return list(session.exec(stmt.order_by(col(Run.id))))


def list_runs(
    session: Session,
    project_id: int | None = None,
    statuses: list[RunStatus] | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[Run]:
    stmt = select(Run)
    if project_id is not None:
        stmt = stmt.where(Run.project_id == project_id)
    if statuses:
        stmt = stmt.where(col(Run.status).in_(statuses))
    stmt = stmt.order_by(col(Run.id).desc()).offset(offset).limit(limit)
    return list(session.exec(stmt))


def request_cancel(session: Session, run_id: int) -> Run:
    """Cancel a queued run now; flag an active one, which the control loop stops on Ray."""
    run = get_run(session, run_id, lock=True)
    status = RunStatus(run.status)
    if status.is_terminal():
        raise Conflict(f"run {run_id} already ended ({status})")
    if status == RunStatus.QUEUED:
        set_status(session, run, RunStatus.CANCELLED, message="cancelled while queued")
    else:
        run.cancel_requested = True  # the control loop stops the Ray job
        session.add(run)
    return run


def retry_run(session: Session, run_id: int) -> Run:
    """Queue a failed or cancelled run again; it resumes from its last checkpoint."""
    run = get_run(session, run_id, lock=True)
    status = RunStatus(run.status)
    if status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise Conflict(f"only failed or cancelled runs can be retried; run {run_id} is {status}")
    return set_status(session, run, RunStatus.QUEUED)
