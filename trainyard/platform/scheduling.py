"""Pure scheduling policies: what to submit next, and what to do after a failed attempt.

Functions of plain values, no database and no Ray, so every rule is unit-tested alone
(Ray Train's FailurePolicy.make_decision is the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from trainyard.platform.status import FailureReason


@dataclass(frozen=True)
class QueuedRun:
    id: int
    priority: int
    devices: int


def plan_submissions(queue: list[QueuedRun], free_devices: int) -> list[int]:
    """Run ids to submit now, in order. `queue` is in priority order (highest first, then
    oldest). Strict order, no backfill: if the head of the queue does not fit, nothing behind
    it starts either, so a 2-device run is never starved by a stream of 1-device runs."""
    chosen: list[int] = []
    for run in sorted(queue, key=lambda r: (-r.priority, r.id)):
        if run.devices > free_devices:
            break
        chosen.append(run.id)
        free_devices -= run.devices
    return chosen


class FailureDecision(StrEnum):
    RETRY = "RETRY"
    FAIL = "FAIL"


# Failures where running again can help. BAD_INPUT (the trainer said the config or data is
# unusable) and UNSATISFIABLE fail the same way every time.
RETRYABLE = frozenset({FailureReason.KILLED, FailureReason.JOB_LOST, FailureReason.TRAINER_ERROR})


def decide_after_failure(reason: FailureReason, attempt: int, max_retries: int) -> FailureDecision:
    """`attempt` is the 1-based attempt that just failed."""
    if reason in RETRYABLE and attempt <= max_retries:
        return FailureDecision.RETRY
    return FailureDecision.FAIL


def classify_exit(exit_code: int | None, message: str) -> FailureReason:
    """Why a Ray job failed, from the entrypoint's exit code (or Ray's message without one)."""
    if exit_code == 2:
        return FailureReason.BAD_INPUT
    if exit_code in (-9, 137) or "SIGKILL" in message or "killed" in message.lower():
        return FailureReason.KILLED
    return FailureReason.TRAINER_ERROR
