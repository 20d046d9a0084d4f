"""Host-memory allocator settings for a training process.

A CPU training step allocates and frees the same large activation and gradient buffers
every step (resnet-small at batch 128 on 32x32 images: several of 33 MB each). glibc's
malloc serves blocks above its mmap threshold (at most 32 MB when left to adapt) with a
fresh `mmap`, and trims freed memory at the top of its heap back to the OS. Either way the
next step touches brand-new pages and pays a page fault for every 4 KB of them: measured
on 2 cores, one CIFAR-10 epoch took 1.6-2.2 million minor faults and ran ~15% slower than
the same loop without them (bench/README.md, part b). Raising both thresholds keeps freed
buffers in the heap for the next step. This is what jemalloc or tcmalloc (Intel's advice for
PyTorch on CPUs) achieve without an `LD_PRELOAD` that a Ray job could not rely on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt(3) parameter numbers from <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap and are reused; above it (rare: a single tensor of
# 1 GiB) they are still mmapped. mallopt takes a C int, so 1 GiB is a comfortable ceiling.
KEEP_BYTES = 1 << 30


def keep_freed_memory(limit_bytes: int = KEEP_BYTES) -> bool:
    """Make glibc keep freed blocks up to `limit_bytes` for reuse. True when applied; False
    where the C library has no `mallopt` (musl, macOS) or refuses the value. Safe to call
    more than once; it only affects allocations made after it."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no mallopt in the C library (%s); allocator left as it is", name)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, limit_bytes)) and bool(
        mallopt(_M_TRIM_THRESHOLD, limit_bytes)
    )
    log.debug("mallopt mmap/trim thresholds %d bytes: %s", limit_bytes, ok)
    return ok
