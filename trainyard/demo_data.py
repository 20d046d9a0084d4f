"""The digits demo dataset: scikit-learn's 1,797 8x8 digits as 32x32 PNGs in ImageFolder form.

Stratified 70/15/15 into train/val/test, deterministic for a given seed, written to a
temporary folder and renamed into place, so an interrupted run never leaves half a dataset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

DIGITS_NAME = "digits"
SIZE_PX = 32


def make_digits(datasets_dir: str | Path, seed: int = 0, force: bool = False) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    dest = Path(datasets_dir) / DIGITS_NAME
    if dest.exists() and not force:
        return dest
    digits = load_digits()
    images = (digits.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)  # [N, 8, 8]
    labels = digits.target
    idx = np.arange(len(labels))
    train_idx, rest = train_test_split(idx, test_size=0.3, stratify=labels, random_state=seed)
    val_idx, test_idx = train_test_split(
        rest, test_size=0.5, stratify=labels[rest], random_state=seed
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".digits-", dir=dest.parent))
    for split, ids in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
        for i in ids:
            folder = tmp / split / str(labels[i])
            folder.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(images[i], mode="L").resize(
                (SIZE_PX, SIZE_PX), Image.Resampling.BILINEAR
            )
            img.save(folder / f"{i:04d}.png")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest
