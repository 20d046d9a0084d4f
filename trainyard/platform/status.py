"""Run states and failure reasons: one enum each, and the one place a run's state changes."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def is_terminal(self) -> bool:
        return self in TERMINAL

    def is_active(self) -> bool:
        """Holds (or is about to hold) devices on the cluster."""
        return self in (RunStatus.STARTING, RunStatus.RUNNING)


TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})

# Every legal move. QUEUED again from STARTING/RUNNING is an automatic retry of a failed
# attempt; from FAILED/CANCELLED it is the user's "retry". SUCCEEDED is final.
ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.STARTING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.STARTING: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.QUEUED,
        }
    ),
    RunStatus.RUNNING: frozenset(
        {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.QUEUED}
    ),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset({RunStatus.QUEUED}),
    RunStatus.CANCELLED: frozenset({RunStatus.QUEUED}),
}


class FailureReason(StrEnum):
    """Why a run failed, as a value the UI and scripts can match on (Ray's JobErrorType)."""

    BAD_INPUT = "BAD_INPUT"  # trainer exit code 2: config, data or model unusable
    TRAINER_ERROR = "TRAINER_ERROR"  # trainer crashed (exit code 1, a traceback)
    KILLED = "KILLED"  # the process was killed (OOM killer, SIGKILL)
    JOB_LOST = "JOB_LOST"  # Ray no longer knows the job (head restarted, job vanished)
    SUBMIT_FAILED = "SUBMIT_FAILED"  # Ray refused the submission
    UNSATISFIABLE = "UNSATISFIABLE"  # asks for more devices than the cluster has


class IllegalTransition(ValueError):
    pass


def check_transition(old: RunStatus, new: RunStatus) -> None:
    if new not in ALLOWED[old]:
        allowed = ", ".join(sorted(ALLOWED[old])) or "none (final)"
        raise IllegalTransition(f"run cannot go from {old} to {new}; allowed: {allowed}")
