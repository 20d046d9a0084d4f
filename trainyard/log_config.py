"""Logging, set up once per process: level and format from TRAINYARD_LOG_LEVEL/_FORMAT."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

_configured = False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    global _configured
    if _configured:
        return
    level = (level or os.environ.get("TRAINYARD_LOG_LEVEL") or "INFO").upper()
    fmt = fmt or os.environ.get("TRAINYARD_LOG_FORMAT") or "plain"
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # TensorBoard's in-app loader logs every 10-second reload at INFO: keep it for DEBUG.
    quiet = max(logging.getLevelName(level), logging.WARNING)
    logging.getLogger("tensorboard").setLevel(quiet)
    logging.getLogger("alembic").setLevel(quiet)  # a line per migration plugin, every start
    _configured = True
