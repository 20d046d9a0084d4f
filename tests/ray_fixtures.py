"""One real local Ray head for the session (a fixture re-exported by tests/conftest.py),
and a condition helper to wait on it."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

# What the session head advertises: two pretend GPUs (Ray hands out ids 0 and 1 without
# checking they exist) and four CPUs, whatever the machine has, so tests see fixed numbers.
RAY_TEST_GPUS = 2
RAY_TEST_CPUS = 4


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, period_s: float = 0.5) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    Fails the test after `timeout_s`, naming `what` was awaited and the last value seen.
    """
    deadline = time.monotonic() + timeout_s
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}: {last!r}")
        time.sleep(period_s)
        last = condition()
    return last


@pytest.fixture(scope="session")
def ray_dashboard() -> Iterator[str]:
    """The dashboard URL of a Ray head started for this session, stopped at its end.

    A private temp dir and free ports (never the defaults), and no reuse of a running head,
    so it can neither clash with nor touch a Ray the user runs on the same machine.
    """
    from trainyard.platform.ray_cluster import LocalRayHead, apply_ray_env, free_port

    apply_ray_env("disabled")  # the clients in this process must match the head
    # Short: Ray's unix socket paths under it must stay below 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="ty-ray-", dir="/tmp"))
    head = LocalRayHead(dashboard_port=free_port(), reuse_existing=False, auth_mode="disabled")
    try:
        url = head.start(num_gpus=RAY_TEST_GPUS, num_cpus=RAY_TEST_CPUS, temp_dir=temp_dir)
        yield url
    finally:
        head.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
