"""The trainer's stdout protocol: human lines plus machine-readable event lines.

Every event is one line: the prefix `@trainyard ` then a JSON object with at least
`event` (a name below), `v` (schema version) and `time` (Unix seconds). The platform follows a
job's log, keeps every line for people, and parses the event lines into metrics and progress.
A reader must ignore unknown events and unknown fields.

| event        | fields                                                                       |
|--------------|------------------------------------------------------------------------------|
| `start`      | run_dir, model, params, device, classes, train_size, val_size, epochs, pid, |
|              | cuda_visible_devices, start_epoch, steps_per_epoch, image_size, version      |
| `resume`     | epoch (the last finished one), checkpoint                                    |
| `progress`   | epoch, epochs, step, steps_per_epoch, global_step, total_steps, loss, lr,    |
|              | images_per_s, eta_s                                                          |
| `metrics`    | epoch, split (`train`, `val` or `test`), values {name: float}, lr           |
| `checkpoint` | epoch, kind (`last`, `best` or `epoch`), path                                |
| `finished`   | status (`succeeded` or `stopped_early`), best_epoch, best {name: float},     |
|              | test {name: float} or null, elapsed_s                                        |
| `error`      | message, kind (`config`, `data` or `internal`)                               |
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO

EVENT_PREFIX = "@trainyard "
SCHEMA_VERSION = 1
EVENT_NAMES = ("start", "resume", "progress", "metrics", "checkpoint", "finished", "error")


def format_event(event: str, **fields: Any) -> str:
    payload = {"event": event, "v": SCHEMA_VERSION, "time": round(time.time(), 3), **fields}
    return EVENT_PREFIX + json.dumps(payload, default=_jsonable, allow_nan=False)


def parse_event(line: str) -> dict[str, Any] | None:
    """The event in `line`, or None for an ordinary log line (or a garbled event)."""
    line = line.rstrip("\r\n")
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        obj = json.loads(line[len(EVENT_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("event"), str) else None


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy / torch scalars
        return v.item()
    return str(v)


class EventWriter:
    """Writes events (and human lines) to a stream, flushing each: a Ray job's log is read
    while the process runs, and a buffered line might never arrive if the process is killed."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stdout
        # Off on data-parallel ranks other than 0: one run, one stream of events.
        self.enabled = enabled

    def emit(self, event: str, **fields: Any) -> None:
        if self.enabled:
            self.stream.write(format_event(event, **_finite(fields)) + "\n")
            self.stream.flush()

    def say(self, line: str) -> None:
        if self.enabled:
            self.stream.write(line + "\n")
            self.stream.flush()


def _finite(obj: Any) -> Any:
    # JSON has no NaN/inf; a diverged loss is reported as null rather than breaking the line.
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
