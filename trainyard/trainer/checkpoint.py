"""Checkpoints: HuggingFace folders (`best/`, `last/`, `epoch-N/`) written atomically.

Each folder is what `transformers.pipeline("image-classification", model=DIR)` loads as it
is: config with label names, weights, image processor. `last/` also holds
`training_state.pt` (optimizer, schedule, scaler, epoch, RNG, best metric) for `--resume`.

A folder is written under a temporary name and swapped in with renames, so a crash (even
SIGKILL) never leaves a half-written checkpoint under its real name: at worst the previous
one survives as `.NAME.old`, which `find_checkpoint` falls back to.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

TRAINING_STATE = "training_state.pt"
INFO_FILE = "trainyard.json"


def save_checkpoint(
    dest: Path,
    model: Any,
    processor: Any,
    info: dict[str, Any],
    training_state: dict[str, Any] | None = None,
) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp"
    old = dest.parent / f".{dest.name}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))
    if training_state is not None:
        torch.save(training_state, tmp / TRAINING_STATE)
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def find_checkpoint(folder: Path, name: str = "last") -> Path | None:
    """`folder/name`, or the copy a crash mid-swap left behind; None if neither exists."""
    for candidate in (folder / name, folder / f".{name}.old"):
        if (candidate / "config.json").exists():
            return candidate
    return None


def load_training_state(checkpoint: Path) -> dict[str, Any]:
    # weights_only=False: the state holds RNG tensors and plain Python values we wrote.
    return torch.load(checkpoint / TRAINING_STATE, map_location="cpu", weights_only=False)


def read_info(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint) / INFO_FILE
    return json.loads(path.read_text()) if path.exists() else {}
