"""Every trainyard setting in one typed place, read from `TRAINYARD_*` environment variables.

`Settings.from_env()` is called where a process starts (the app, the CLI), never at import.
Command-line flags override these by building a copy with `dataclasses.replace`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

PREFIX = "TRAINYARD_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    datasets_dir: Path = PROJECT_ROOT / "datasets"
    """Root that every registered dataset must live under; the digits demo goes here."""
    storage_dir: Path = PROJECT_ROOT / "runs"
    """Run folders (checkpoints, TensorBoard events). Shared by every node on a cluster."""
    cache_dir: Path = Path.home() / ".cache" / "trainyard"
    """Decoded-image caches (`data.cache: disk`)."""
    db_url: str = ""
    """SQLAlchemy URL; empty means SQLite at STORAGE_DIR/trainyard.db."""
    ray_address: str = ""
    """Ray cluster to join; empty starts an embedded local head."""
    num_gpus: int | None = None
    """GPUs the embedded Ray head advertises; None detects them."""
    threads_per_run: int = 2
    """torch CPU threads per training run (Ray sets OMP_NUM_THREADS=1 otherwise). On a CPU-only
    cluster a run also books this many CPUs, which sets how many run at once."""
    host: str = "127.0.0.1"
    port: int = 7860
    log_level: str = "INFO"
    log_format: str = "plain"
    """plain or json."""
    hub_offline: bool = True
    """No HuggingFace Hub downloads (HF_HUB_OFFLINE=1 for the app and its jobs): hub ids must
    already be in the local cache. Set TRAINYARD_HUB_OFFLINE=0 on a machine with internet."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw, hints[f.name])
        s = cls(**values)
        if s.log_format not in ("plain", "json"):
            raise ValueError(f"{PREFIX}LOG_FORMAT: {s.log_format!r} is not one of plain, json")
        return s

    def apply_process_env(self) -> None:
        """Environment the app, the CLI and (through them) every training job need."""
        if self.hub_offline:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # Model loads print "Loading weights" progress bars: noise in a server's log.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.storage_dir / 'trainyard.db'}"


def _parse(name: str, raw: str, typ: Any) -> Any:
    text = str(typ)
    try:
        if typ is Path or "Path" in text:
            return Path(raw).expanduser()
        if "bool" in text:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if "int" in text:
            return int(raw)
        return raw
    except ValueError:
        raise ValueError(f"{PREFIX}{name.upper()}: {raw!r} is not a valid {text}") from None
