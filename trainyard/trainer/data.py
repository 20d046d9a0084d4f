"""ImageFolder scanning and validation: what is in `root/{train,val,test}/CLASS/`.

Everything that can be wrong with a dataset's layout is found here, before a model is built,
and reported in one line that names the folder or file. Decoding (and so finding corrupt
images) lives in `image_cache.py`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from trainyard.trainer.config import ConfigError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
REQUIRED_SPLITS = ("train", "val")
OPTIONAL_SPLITS = ("test",)
LAYOUT_HINT = "expected DATASET/train/CLASS/*.jpg and DATASET/val/CLASS/*.jpg, optional test/"


class DataError(ConfigError):
    """The dataset cannot be used as it is. One line naming the folder or file."""


@dataclass
class Split:
    name: str
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self, num_classes: int) -> list[int]:
        out = [0] * num_classes
        for y in self.labels:
            out[y] += 1
        return out


@dataclass
class DatasetScan:
    root: str
    classes: list[str]
    splits: dict[str, Split]
    ignored: list[str] = field(default_factory=list)  # hidden files and non-images

    def summary(self) -> dict[str, object]:
        return {
            "root": self.root,
            "classes": self.classes,
            "counts": {n: s.counts(len(self.classes)) for n, s in self.splits.items()},
            "ignored": len(self.ignored),
        }


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_dataset(root: str | os.PathLike[str]) -> DatasetScan:
    """Scan and validate the layout. Raises DataError naming what is wrong and where."""
    base = Path(root).expanduser()
    if not base.exists():
        raise DataError(f"data.root: dataset folder not found: {base}")
    if not base.is_dir():
        raise DataError(f"data.root: not a folder: {base}")
    for name in REQUIRED_SPLITS:
        if not (base / name).is_dir():
            hint = LAYOUT_HINT
            if name == "train" and _has_images(_visible_dirs(base)[:3]):
                hint = f"its subfolders hold images, so it looks like one split; {LAYOUT_HINT}"
            raise DataError(f"data.root: {base} has no {name}/ folder ({hint})")

    class_sets: dict[str, list[str]] = {}
    for name in (*REQUIRED_SPLITS, *OPTIONAL_SPLITS):
        if (base / name).is_dir():
            class_sets[name] = [p.name for p in _visible_dirs(base / name)]
    classes = class_sets["train"]
    if not classes:
        raise DataError(f"data.root: {base / 'train'} has no class folders ({LAYOUT_HINT})")
    if len(classes) < 2:
        raise DataError(f"data.root: {base / 'train'} has one class ({classes[0]}); need 2 or more")
    _check_same_classes(base, classes, class_sets)

    scan = DatasetScan(root=str(base), classes=classes, splits={})
    for name in class_sets:
        scan.splits[name] = _scan_split(base / name, classes, scan)
    for name, split in scan.splits.items():
        if len(split) == 0:
            raise DataError(f"data.root: {base / name} has class folders but no images")
    empty = [
        c for c, n in zip(classes, scan.splits["train"].counts(len(classes)), strict=True) if n == 0
    ]
    if empty:
        raise DataError(f"data.root: train/ class folders with no images: {', '.join(empty)}")
    if scan.ignored:
        log.warning(
            "ignored %d hidden or non-image files under %s, e.g. %s",
            len(scan.ignored),
            base,
            scan.ignored[0],
        )
    return scan


def _has_images(folders: list[Path]) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for folder in folders for p in folder.iterdir())


def _check_same_classes(base: Path, classes: list[str], sets: dict[str, list[str]]) -> None:
    train = set(classes)
    for name, found in sets.items():
        other = set(found)
        if name == "test":
            extra = sorted(other - train)  # test may lack a class, but not invent one
            if extra:
                raise DataError(
                    f"data.root: test/ has class folders that train/ lacks: {', '.join(extra)} "
                    f"(in {base})"
                )
        elif other != train:
            only_train = ", ".join(sorted(train - other)) or "none"
            only_other = ", ".join(sorted(other - train)) or "none"
            raise DataError(
                f"data.root: class folders differ between train/ and {name}/ in {base}: "
                f"only in train/: {only_train}; only in {name}/: {only_other}"
            )


def _scan_split(folder: Path, classes: list[str], scan: DatasetScan) -> Split:
    split = Split(folder.name)
    index = {c: i for i, c in enumerate(classes)}
    for cls_dir in _visible_dirs(folder):
        label = index[cls_dir.name]
        for dirpath, dirnames, filenames in os.walk(cls_dir):
            hidden = [d for d in dirnames if d.startswith(".")]
            scan.ignored.extend(os.path.join(dirpath, d) for d in hidden)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                path = os.path.join(dirpath, fname)
                if fname.startswith(".") or Path(fname).suffix.lower() not in IMAGE_EXTENSIONS:
                    scan.ignored.append(path)
                    continue
                split.paths.append(path)
                split.labels.append(label)
    return split
