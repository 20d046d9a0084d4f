"""The control loop: reconcile Ray's job states onto runs, follow logs, submit the queue.

One `tick()` does all three, in that order; `serve` calls it every `TICK_PERIOD_S`. It is
the only code that talks to Ray about runs; the UI and the CLI only write the database
(submit, flag a cancel, retry) and the next tick acts on it. Every step is idempotent and
keyed on what the database says, so a killed and restarted app picks up where it stopped.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session

from trainyard.platform import runlogs, runs
from trainyard.platform.jobs import JobState
from trainyard.platform.models import Run, utcnow
from trainyard.platform.projects import get_project
from trainyard.platform.scheduling import (
    FailureDecision,
    QueuedRun,
    classify_exit,
    decide_after_failure,
    plan_submissions,
)
from trainyard.platform.status import FailureReason, IllegalTransition, RunStatus

log = logging.getLogger(__name__)

TICK_PERIOD_S = 1.0
# A job Ray does not know yet right after submit is normal; after this long it is lost.
LOST_JOB_GRACE_S = 60.0
INGEST_BATCH_LINES = 5000


@dataclass(frozen=True)
class JobView:
    phase: JobState
    message: str = ""
    exit_code: int | None = None
    node: str | None = None


@dataclass(frozen=True)
class JobRequest:
    submission_id: str
    entrypoint: list[str]
    num_gpus: float
    num_cpus: float
    metadata: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)


class JobBackend(Protocol):
    """What the control loop needs from Ray (RayJobBackend) or a fake in unit tests."""

    def capacity(self) -> Capacity: ...
    def submit(self, req: JobRequest) -> None: ...
    def status(self, submission_id: str) -> JobView | None: ...
    def logs(self, submission_id: str) -> str: ...
    def stop(self, submission_id: str) -> None: ...


@dataclass(frozen=True)
class Capacity:
    gpus: int
    cpus: int

    def devices(self, cpus_per_run: int) -> int:
        """Schedulable devices: GPUs, or on a CPU-only cluster, slots of `cpus_per_run`."""
        return self.gpus if self.gpus > 0 else max(1, self.cpus // max(1, cpus_per_run))


# Variables of the serving process that every job inherits (set by Settings.apply_process_env).
PASSED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "TRAINYARD_CACHE_DIR")


def _passed_env() -> dict[str, str]:
    return {k: os.environ[k] for k in PASSED_ENV if k in os.environ}


@dataclass
class ControlPlane:
    engine: Engine
    jobs: JobBackend
    storage_dir: Path
    threads_per_run: int = 1
    _stop: threading.Event = field(default_factory=threading.Event)

    # ---- the loop ------------------------------------------------------------------------

    def tick(self) -> None:
        self.reconcile()
        self.follow()
        self.schedule()

    def run_forever(self, period_s: float = TICK_PERIOD_S) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # one bad tick (Ray briefly away, DB locked) must not stop the loop
                log.exception("control loop tick failed; retrying in %.0fs", period_s)
            self._stop.wait(period_s)

    def start(self, period_s: float = TICK_PERIOD_S) -> threading.Thread:
        t = threading.Thread(
            target=self.run_forever, args=(period_s,), daemon=True, name="trainyard-control"
        )
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()

    # ---- capacity --------------------------------------------------------------------------

    def capacity_devices(self) -> int:
        return self.jobs.capacity().devices(self.threads_per_run)

    # ---- schedule --------------------------------------------------------------------------

    def schedule(self) -> list[int]:
        """Submit queued runs while devices are free. Returns the ids submitted."""
        capacity = self.jobs.capacity()
        total = capacity.devices(self.threads_per_run)
        submitted: list[int] = []
        with Session(self.engine, expire_on_commit=False) as s:
            used = sum(r.devices for r in runs.active_runs(s))
            queued = runs.queued_runs(s)
            for r in [r for r in queued if r.devices > total]:
                # Queued before the cluster shrank (or submitted without a capacity check):
                # it can never start, and would block everything behind it.
                runs.set_status(
                    s,
                    r,
                    RunStatus.FAILED,
                    reason=FailureReason.UNSATISFIABLE,
                    message=f"asks for {r.devices} devices; the cluster has {total}",
                )
                s.commit()
            queue = [
                QueuedRun(r.id, r.priority, r.devices)  # type: ignore[arg-type]
                for r in queued
                if r.devices <= total
            ]
            for run_id in plan_submissions(queue, total - used):
                run = runs.get_run(s, run_id, lock=True)
                if run.status != RunStatus.QUEUED:
                    continue  # cancelled meanwhile
                req = self._prepare(s, run, capacity)
                s.commit()  # STARTING is durable before Ray hears of it
                try:
                    self.jobs.submit(req)
                except Exception as e:
                    log.warning("submitting run %s failed: %s", run.id, e)
                    runs.set_status(
                        s,
                        run,
                        RunStatus.FAILED,
                        reason=FailureReason.SUBMIT_FAILED,
                        message=f"Ray refused the job: {e}",
                    )
                    s.commit()
                    continue
                submitted.append(run_id)
        return submitted

    def _prepare(self, s: Session, run: Run, capacity: Capacity) -> JobRequest:
        runs.set_status(s, run, RunStatus.STARTING)
        project = get_project(s, run.project_id)
        run_dir = self.storage_dir / "runs" / f"{run.id:06d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path = run_dir / "submitted_config.yaml"
        config_path.write_text(yaml.safe_dump(run.config, sort_keys=False))
        run.run_dir = str(run_dir)
        # Unique across databases: a Ray cluster outlives a reset (or second) database whose
        # run ids start again at 1, and Ray refuses a duplicate submission id.
        run.submission_id = f"trainyard-run-{run.id}-attempt-{run.attempt}-{uuid.uuid4().hex[:8]}"
        s.add(run)
        threads = str(self.threads_per_run)
        common = ["--config", str(config_path), "--run-dir", str(run_dir), "--resume"]
        use_gpu = capacity.gpus > 0
        if run.devices > 1:
            # Ray Train starts one num_gpus=1 worker per device; the entrypoint holds none.
            entry = [
                sys.executable,
                "-m",
                "trainyard.platform.ray_train_entry",
                *common,
                "--workers",
                str(run.devices),
                "--threads",
                threads,
            ]
            if use_gpu:
                entry.append("--use-gpu")
            num_gpus, num_cpus = 0.0, 0.0
        else:
            entry = [
                sys.executable,
                "-m",
                "trainyard.trainer",
                *common,
                "--set",
                f"loop.threads={threads}",
            ]
            num_gpus, num_cpus = (1.0, 0.0) if use_gpu else (0.0, float(self.threads_per_run))
        return JobRequest(
            submission_id=run.submission_id,
            entrypoint=entry,
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            metadata={
                "trainyard_run_id": str(run.id),
                "project": project.name,
                "run": run.name,
                "attempt": str(run.attempt),
            },
            env={"OMP_NUM_THREADS": threads, **_passed_env()},
        )

    # ---- follow ----------------------------------------------------------------------------

    def follow(self) -> None:
        with Session(self.engine, expire_on_commit=False) as s:
            for run in runs.active_runs(s):
                self._drain(s, run, final=False)

    def _drain(self, s: Session, run: Run, final: bool) -> int:
        """Store the lines of the run's Ray log that are not stored yet. A trailing line
        without its newline is still being written: it waits, unless the job has ended."""
        if not run.submission_id:
            return 0
        try:
            text = self.jobs.logs(run.submission_id)
        except Exception as e:
            log.debug("no logs yet for %s: %s", run.submission_id, e)
            return 0
        lines = text.split("\n")
        complete = lines if final and lines[-1] else lines[:-1]
        new = complete[run.attempt_log_lines :]
        for start in range(0, len(new), INGEST_BATCH_LINES):
            runlogs.ingest_lines(s, run, new[start : start + INGEST_BATCH_LINES])
            s.commit()
        return len(new)

    # ---- reconcile -------------------------------------------------------------------------

    def reconcile(self) -> None:
        with Session(self.engine, expire_on_commit=False) as s:
            for run in runs.active_runs(s):
                try:
                    self._reconcile_one(s, run)
                    s.commit()
                except IllegalTransition as e:  # someone else moved it first
                    s.rollback()
                    log.debug("run %s: %s", run.id, e)

    def _reconcile_one(self, s: Session, run: Run) -> None:
        sid = run.submission_id
        if sid is None:
            runs.set_status(
                s,
                run,
                RunStatus.FAILED,
                reason=FailureReason.JOB_LOST,
                message="no Ray job was recorded for this attempt",
            )
            return
        view = self.jobs.status(sid)
        if run.cancel_requested and (view is None or not view.phase.is_terminal()):
            self.jobs.stop(sid)
        if view is None:
            age = (utcnow() - (run.started_at or run.created_at)).total_seconds()
            if run.status == RunStatus.STARTING and age < LOST_JOB_GRACE_S:
                return
            self._fail(
                s,
                run,
                FailureReason.JOB_LOST,
                f"Ray has no job {sid} (the cluster restarted or the job was deleted)",
            )
            return
        if view.node and run.node != view.node:
            run.node = view.node
        if view.phase == JobState.PENDING:
            return
        if view.phase == JobState.RUNNING:
            if run.status == RunStatus.STARTING:
                runs.set_status(s, run, RunStatus.RUNNING)
            return
        self._drain(s, run, final=True)
        if view.phase == JobState.SUCCEEDED:
            runs.set_status(s, run, RunStatus.SUCCEEDED)
        elif view.phase == JobState.STOPPED or run.cancel_requested:
            runs.set_status(
                s,
                run,
                RunStatus.CANCELLED,
                message="cancelled" if run.cancel_requested else "stopped on Ray",
            )
        else:
            self._fail(
                s,
                run,
                classify_exit(view.exit_code, view.message),
                view.message or "the job failed",
            )

    def _fail(self, s: Session, run: Run, reason: FailureReason, message: str) -> None:
        decision = decide_after_failure(reason, run.attempt, run.max_retries)
        if decision == FailureDecision.RETRY:
            log.info(
                "run %s attempt %s failed (%s); queueing it again", run.id, run.attempt, reason
            )
            runs.set_status(s, run, RunStatus.QUEUED)
            run.failure_reason, run.failure_message = reason, f"attempt {run.attempt}: {message}"
            return
        runs.set_status(s, run, RunStatus.FAILED, reason=reason, message=message)
