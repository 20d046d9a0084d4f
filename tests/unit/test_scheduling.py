import pytest

from trainyard.platform.scheduling import (
    FailureDecision,
    QueuedRun,
    classify_exit,
    decide_after_failure,
    plan_submissions,
)
from trainyard.platform.status import FailureReason


def q(id: int, priority: int = 0, devices: int = 1) -> QueuedRun:
    return QueuedRun(id, priority, devices)


def test_fills_free_devices_in_priority_order() -> None:
    queue = [q(1), q(2), q(3, priority=9), q(4)]
    assert plan_submissions(queue, free_devices=2) == [3, 1]
    assert plan_submissions(queue, free_devices=0) == []


def test_no_backfill_past_a_run_that_does_not_fit() -> None:
    queue = [q(1, priority=5, devices=2), q(2), q(3)]
    assert plan_submissions(queue, free_devices=1) == []
    assert plan_submissions(queue, free_devices=3) == [1, 2]


@pytest.mark.parametrize(
    ("reason", "attempt", "max_retries", "expected"),
    [
        (FailureReason.KILLED, 1, 1, FailureDecision.RETRY),
        (FailureReason.KILLED, 2, 1, FailureDecision.FAIL),
        (FailureReason.KILLED, 1, 0, FailureDecision.FAIL),
        (FailureReason.JOB_LOST, 1, 3, FailureDecision.RETRY),
        (FailureReason.BAD_INPUT, 1, 3, FailureDecision.FAIL),
    ],
)
def test_retry_decision(reason, attempt, max_retries, expected) -> None:  # type: ignore[no-untyped-def]
    assert decide_after_failure(reason, attempt, max_retries) == expected


def test_classify_exit() -> None:
    assert classify_exit(2, "") == FailureReason.BAD_INPUT
    assert classify_exit(-9, "") == FailureReason.KILLED
    assert classify_exit(1, "Traceback") == FailureReason.TRAINER_ERROR
