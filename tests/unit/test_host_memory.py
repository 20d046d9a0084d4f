"""The allocator setting that stops a CPU training step from page-faulting its buffers."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Rounds of allocating, touching and freeing 64 MB, like one training step's buffers.
_PROBE = """
import resource, sys
import torch
from trainyard.trainer.host_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else None
for _ in range(20):  # the heap grows to its working size first
    torch.empty(1 << 24).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.empty(1 << 24).fill_(1.0)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_instead_of_faulted_in_again() -> None:
    _, default = _faults("default")
    applied, tuned = _faults("tuned")
    assert applied == "True"
    # 64 MB is 16,384 pages: by default (mmap and munmap) every round faults them all in again.
    assert default > 20 * 10_000
    assert tuned < 2 * 16_384, f"{tuned} page faults with freed memory kept, {default} without"
