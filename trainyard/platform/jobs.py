"""Ray jobs for runs: submit, watch, read logs, stop, list, through the dashboard's Jobs API.

One run attempt is one Ray job whose `submission_id` the caller chooses (the database is
the queue; Ray only runs what is submitted). `RayJobs` is a thin, typed layer over
`ray.job_submission.JobSubmissionClient` that turns Ray's HTTP errors into errors that say
what happened, and that books resources the way `DESIGN.md` ("A run's life") says:

- one device: the entrypoint books one GPU (`entrypoint_num_gpus=1`); the trainer process
  inherits `CUDA_VISIBLE_DEVICES` from the supervisor that holds it;
- N devices: the entrypoint is `trainyard.platform.ray_train_entry`, which books nothing
  itself: its Ray Train workers book one GPU each. Booking both would hold 2N GPUs;
- CPU only: the entrypoint books `num_cpus` (`entrypoint_num_cpus`).
"""

from __future__ import annotations

import logging
import os
import shlex
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainyard.platform.ray_cluster import (
    TOKEN_HINT,
    RayClusterError,
    check_address_not_overridden,
)

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

log = logging.getLogger(__name__)

DISTRIBUTED_ENTRY_MODULE = "trainyard.platform.ray_train_entry"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class RayJobsError(RuntimeError):
    """A Jobs API call failed. The message says what to do about it."""


class RayUnavailable(RayJobsError):
    """The dashboard did not answer, or refused us (authentication)."""


class JobNotFound(RayJobsError):
    """Ray has no job with this submission id (never submitted, or the cluster restarted)."""


class JobAlreadyExists(RayJobsError):
    """A job with this submission id exists already.

    Submitting is deliberately not idempotent: a second submit of the same id is a scheduler
    bug (or a crash between submit and commit) and silently accepting it would hide that, and
    could hide a different entrypoint or resources. A reconciler that finds this error can
    adopt the existing job with `status()`.
    """

    def __init__(self, submission_id: str) -> None:
        super().__init__(
            f"a Ray job with submission id {submission_id!r} already exists on the cluster; "
            "use status() to follow it, or submit the new attempt under a new id"
        )
        self.submission_id = submission_id


class JobState(StrEnum):
    """Ray's `JobStatus`, as trainyard sees it. Unknown jobs are `None`, not a state."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def is_terminal(self) -> bool:
        return self in (JobState.STOPPED, JobState.SUCCEEDED, JobState.FAILED)


@dataclass(frozen=True)
class JobInfo:
    submission_id: str
    state: JobState
    message: str = ""
    entrypoint: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    start_time: datetime | None = None
    """When the job was accepted (UTC)."""
    end_time: datetime | None = None
    """When it reached a terminal state (UTC)."""
    error_type: str | None = None
    """Ray's `JobErrorType` when it failed, e.g. JOB_ENTRYPOINT_COMMAND_ERROR."""
    driver_exit_code: int | None = None
    """The entrypoint's exit code once it ended (None when stopped or never started)."""
    driver_node_id: str | None = None
    driver_node_ip: str | None = None


def is_distributed_entrypoint(entrypoint: Sequence[str] | str) -> bool:
    """True when the entrypoint starts Ray Train (`python -m ...ray_train_entry`)."""
    args = shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)
    return DISTRIBUTED_ENTRY_MODULE in args


def entrypoint_resources(num_gpus: float, num_cpus: float, distributed: bool) -> dict[str, float]:
    """The `entrypoint_num_gpus` / `entrypoint_num_cpus` to book for a job (zeros left out).

    A pure policy: it refuses the two ways to book GPUs nobody uses.
    """
    if num_gpus < 0 or num_cpus < 0:
        raise ValueError(f"num_gpus ({num_gpus}) and num_cpus ({num_cpus}) must be >= 0")
    if distributed:
        if num_gpus > 0:
            raise ValueError(
                f"num_gpus={num_gpus} with the Ray Train entrypoint: its workers book one GPU "
                "each (--workers N --use-gpu), so the entrypoint must book none; submit it "
                "with num_gpus=0"
            )
        # The driver only waits for its workers; booking a CPU could starve them of one.
        return {}
    if num_gpus > 1:
        raise ValueError(
            f"num_gpus={num_gpus}: one trainer process uses one device; for more, run "
            f"`python -m {DISTRIBUTED_ENTRY_MODULE} --workers N` with num_gpus=0"
        )
    out: dict[str, float] = {}
    if num_gpus > 0:
        out["entrypoint_num_gpus"] = num_gpus
    if num_cpus > 0:
        out["entrypoint_num_cpus"] = num_cpus
    return out


def job_runtime_env(env: dict[str, str] | None, working_dir: str | None) -> dict[str, Any]:
    """The job's runtime env: the caller's variables plus what every trainyard job needs.

    Without a `working_dir`, the job runs against this checkout: `PYTHONPATH` makes
    `import trainyard` work whatever directory Ray starts the job in (it needs the same path
    on every node, which a shared install or `ray_cluster.yaml`'s setup provides). With one,
    Ray uploads it and puts it on the path itself.
    """
    env_vars = {"PYTHONUNBUFFERED": "1"}  # log lines reach the Jobs API as they are printed
    if working_dir is None:
        env_vars["PYTHONPATH"] = str(PROJECT_ROOT)
    for key, value in (env or {}).items():
        if key == "PYTHONPATH" and "PYTHONPATH" in env_vars:
            value = f"{env_vars['PYTHONPATH']}{os.pathsep}{value}"
        env_vars[key] = str(value)
    runtime_env: dict[str, Any] = {"env_vars": env_vars}
    if working_dir is not None:
        runtime_env["working_dir"] = working_dir
    return runtime_env


class RayJobs:
    """The Jobs API of one cluster, by its dashboard URL (`http://host:8265`).

    No `ray.init()`: every call is one HTTP request, safe from any thread of a web process.
    """

    def __init__(self, dashboard_url: str) -> None:
        self.dashboard_url = dashboard_url.rstrip("/")
        self._client: JobSubmissionClient | None = None

    @property
    def client(self) -> JobSubmissionClient:
        # Created on first use: the constructor already calls the cluster, and an app must
        # be able to start (and show that Ray is down) while Ray is away.
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                check_address_not_overridden(self.dashboard_url)
            except RayClusterError as e:
                raise RayJobsError(str(e)) from None
            try:
                self._client = JobSubmissionClient(self.dashboard_url)
            except Exception as e:
                raise self._translate(e, "connect") from e
        return self._client

    # ---- calls -----------------------------------------------------------------------------

    def submit(
        self,
        submission_id: str,
        entrypoint: Sequence[str] | str,
        num_gpus: float = 0.0,
        num_cpus: float = 1.0,
        env: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
        working_dir: str | None = None,
    ) -> str:
        """Submit `entrypoint` (an argv list, or a shell string) as job `submission_id`.

        `env` becomes the job's environment variables (pass `OMP_NUM_THREADS`: Ray sets it to
        1 in every job otherwise). Returns the submission id. Raises `JobAlreadyExists`.
        """
        distributed = is_distributed_entrypoint(entrypoint)
        resources = entrypoint_resources(num_gpus, num_cpus, distributed)
        command = entrypoint if isinstance(entrypoint, str) else shlex.join(entrypoint)
        try:
            return self.client.submit_job(
                entrypoint=command,
                submission_id=submission_id,
                runtime_env=job_runtime_env(env, working_dir),
                metadata={k: str(v) for k, v in (metadata or {}).items()},
                **resources,  # type: ignore[arg-type]  # keys are the two float parameters
            )
        except Exception as e:
            raise self._translate(e, f"submit {submission_id}", submission_id) from e

    def status(self, submission_id: str) -> JobInfo | None:
        """The job's state and details, or None when Ray does not know the job."""
        try:
            details = self.client.get_job_info(submission_id)
        except Exception as e:
            err = self._translate(e, f"read the status of {submission_id}", submission_id)
            if isinstance(err, JobNotFound):
                return None
            raise err from e
        return _job_info(details)

    def logs(self, submission_id: str) -> str:
        """The job's whole log so far (stdout and stderr of the entrypoint, interleaved)."""
        try:
            return str(self.client.get_job_logs(submission_id))
        except Exception as e:
            raise self._translate(e, f"read the logs of {submission_id}", submission_id) from e

    async def tail(self, submission_id: str) -> AsyncIterator[str]:
        """Follow the job's log: chunks of text as they are written, until the job ends."""
        try:
            async for chunk in self.client.tail_job_logs(submission_id):
                yield chunk
        except Exception as e:
            raise self._translate(e, f"follow the logs of {submission_id}", submission_id) from e

    def stop(self, submission_id: str) -> bool:
        """Ask the job to stop (SIGTERM, then SIGKILL after a grace period); don't wait.

        True when the job was still running; False when there was nothing to stop (it had
        ended, or Ray does not know it), so cancelling twice is harmless.
        """
        try:
            return bool(self.client.stop_job(submission_id))
        except Exception as e:
            err = self._translate(e, f"stop {submission_id}", submission_id)
            if isinstance(err, JobNotFound):
                return False
            raise err from e

    def list_submissions(self) -> list[JobInfo]:
        """Every job submitted through the Jobs API, oldest first, with its metadata.

        Ray's `list_jobs()` also lists DRIVER entries (each `ray.init()` that connected,
        e.g. Ray Train's driver inside a job): those are not runs and are left out.
        """
        try:
            jobs = self.client.list_jobs()
        except Exception as e:
            raise self._translate(e, "list jobs") from e
        out = [_job_info(j) for j in jobs if str(_value(j.type)).upper() == "SUBMISSION"]
        return sorted(out, key=lambda j: j.start_time or datetime.min.replace(tzinfo=UTC))

    # ---- errors ----------------------------------------------------------------------------

    def _translate(
        self, e: Exception, action: str, submission_id: str | None = None
    ) -> RayJobsError:
        """A `RayJobsError` saying what went wrong, from what Ray's client raised.

        Ray's client raises bare RuntimeErrors carrying the HTTP status; a duplicate
        submission id comes back as a 500 whose body says "already exists".
        """
        if isinstance(e, RayJobsError):
            return e
        text = str(e)
        if submission_id is not None and "already exists" in text:
            return JobAlreadyExists(submission_id)
        if submission_id is not None and "status code 404" in text:
            return JobNotFound(f"Ray has no job {submission_id!r} at {self.dashboard_url}")
        name = type(e).__name__
        if name == "AuthenticationError" or "authentication token" in text.lower():
            reason = text.strip().splitlines()[0] if text.strip() else name
            return RayUnavailable(
                f"cannot {action}: the Ray cluster at {self.dashboard_url} refused us "
                f"({reason}); {TOKEN_HINT}"
            )
        if isinstance(e, ConnectionError | OSError) or "ConnectionError" in name:
            return RayUnavailable(
                f"cannot {action}: no Ray dashboard answers at {self.dashboard_url}; "
                "is the cluster running (`ray status` on the head)?"
            )
        first_line = text.strip().splitlines()[0] if text.strip() else name
        return RayJobsError(
            f"cannot {action} on the Ray cluster at {self.dashboard_url}: {first_line}"
        )


def _value(v: Any) -> Any:
    return getattr(v, "value", v)


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def _job_info(d: Any) -> JobInfo:
    """A `JobInfo` from Ray's `JobDetails`."""
    agent = getattr(d, "driver_agent_http_address", None)
    return JobInfo(
        submission_id=str(d.submission_id),
        state=JobState(str(_value(d.status))),
        message=d.message or "",
        entrypoint=d.entrypoint or "",
        metadata=dict(d.metadata or {}),
        start_time=_time(d.start_time),
        end_time=_time(d.end_time),
        error_type=None if d.error_type is None else str(_value(d.error_type)),
        driver_exit_code=getattr(d, "driver_exit_code", None),
        driver_node_id=getattr(d, "driver_node_id", None),
        driver_node_ip=urllib.parse.urlparse(agent).hostname if agent else None,
    )
