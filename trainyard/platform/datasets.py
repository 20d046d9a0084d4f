"""Registered datasets: ImageFolder roots confined to the datasets root, with a scan report.

A registration is a name for a folder, nothing more: unregistering one removes the row and
never touches the folder. Configs and runs name the folder itself (`data.root`), not the
row, so they keep working after it is unregistered, and the service says which ones do.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from trainyard.platform.errors import Conflict, NotFound, PlatformError
from trainyard.platform.models import Dataset, Run, StoredConfig, utcnow
from trainyard.platform.projects import get_project
from trainyard.platform.status import TERMINAL, RunStatus
from trainyard.trainer.data import DataError, DatasetScan, scan_dataset


def resolve_under(datasets_dir: Path, user_path: str) -> Path:
    """`user_path` (relative to the datasets root, or absolute) resolved, symlinks included,
    and refused unless it lies inside the root: the server never reads arbitrary folders."""
    root = Path(datasets_dir).resolve()
    raw = (user_path or "").strip()
    if not raw:
        raise PlatformError("dataset folder: give a folder under the datasets root")
    path = Path(raw).expanduser()
    path = (path if path.is_absolute() else root / path).resolve()
    if path != root and root not in path.parents:
        raise PlatformError(
            f"dataset folder: {raw} is outside the datasets root {root}; "
            "copy or link it under that folder"
        )
    return path


def inspect_dataset(path: Path, workers: int = 4) -> dict[str, Any]:
    """The scan report: classes, images per class and split, image sizes, unreadable files."""
    scan = scan_dataset(path)
    files = [p for split in scan.splits.values() for p in split.paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        headers = list(pool.map(_header, files))
    sizes = Counter(h for h in headers if isinstance(h, tuple))
    bad = [
        {"path": os.path.relpath(f, path), "problem": h}
        for f, h in zip(files, headers, strict=True)
        if isinstance(h, str)
    ]
    return {
        "classes": scan.classes,
        "counts": {name: split.counts(len(scan.classes)) for name, split in scan.splits.items()},
        "images": len(files),
        "sizes": [{"width": w, "height": h, "count": n} for (w, h), n in sizes.most_common(5)],
        "unreadable": bad,
        "ignored": [os.path.relpath(p, path) for p in scan.ignored[:100]],
        "samples": _samples(scan, path),
    }


def _header(path: str) -> tuple[int, int] | str:
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as im:
            im.verify()
            return im.size
    except Exception as e:  # PIL raises many kinds for broken files
        return f"not a readable image ({type(e).__name__})"


def _samples(scan: DatasetScan, root: Path, per_class: int = 8) -> dict[str, list[str]]:
    train = scan.splits["train"]
    out: dict[str, list[str]] = {c: [] for c in scan.classes}
    for p, y in zip(train.paths, train.labels, strict=True):
        if len(out[scan.classes[y]]) < per_class:
            out[scan.classes[y]].append(os.path.relpath(p, root))
    return out


def register_dataset(
    session: Session, project_id: int, name: str, folder: str, datasets_dir: Path
) -> Dataset:
    get_project(session, project_id)
    name = (name or "").strip() or Path(folder).name
    path = resolve_under(datasets_dir, folder)
    if session.exec(
        select(Dataset).where(Dataset.project_id == project_id, Dataset.name == name)
    ).first():
        raise Conflict(f"this project already has a dataset named {name!r}")
    try:
        report = inspect_dataset(path)
    except DataError as e:
        raise PlatformError(str(e)) from None
    rel = os.path.relpath(path, Path(datasets_dir).resolve())
    ds = Dataset(project_id=project_id, name=name, path=rel, scan=report, scanned_at=utcnow())
    session.add(ds)
    session.flush()
    return ds


def rescan_dataset(session: Session, dataset_id: int, datasets_dir: Path) -> Dataset:
    ds = get_dataset(session, dataset_id)
    try:
        ds.scan = inspect_dataset(Path(datasets_dir).resolve() / ds.path)
    except DataError as e:
        raise PlatformError(str(e)) from None
    ds.scanned_at = utcnow()
    session.add(ds)
    return ds


def get_dataset(session: Session, dataset_id: int) -> Dataset:
    ds = session.get(Dataset, dataset_id)
    if ds is None:
        raise NotFound(f"no dataset with id {dataset_id}")
    return ds


def list_datasets(session: Session, project_id: int) -> list[Dataset]:
    stmt = select(Dataset).where(Dataset.project_id == project_id).order_by(col(Dataset.name))
    return list(session.exec(stmt))


def dataset_root(ds: Dataset, datasets_dir: Path) -> Path:
    return Path(datasets_dir).resolve() / ds.path


@dataclass
class DatasetUsage:
    """What in the dataset's project names its folder as `data.root`."""

    configs: list[str] = field(default_factory=list)  # names with any version naming it
    unfinished_runs: int = 0  # queued, starting or running: they read the folder
    finished_runs: int = 0


def data_root_folder(root: Any, datasets_dir: Path) -> Path | None:
    """The folder a config's `data.root` names: relative roots are under the datasets root
    (as `Platform.absolute_data_root` takes them when a run is submitted)."""
    if not isinstance(root, str) or not root.strip():
        return None
    path = Path(root.strip()).expanduser()
    return (path if path.is_absolute() else Path(datasets_dir) / path).resolve()


def dataset_usage(session: Session, ds: Dataset, datasets_dir: Path) -> DatasetUsage:
    """Configs and runs of the dataset's project whose `data.root` is the dataset's folder.
    The database groups by the stored root, so only the distinct roots reach Python."""
    folder = dataset_root(ds, datasets_dir).resolve()

    def names_it(root: Any) -> bool:
        return data_root_folder(root, datasets_dir) == folder

    config_root = col(StoredConfig.body)[("data", "root")].as_string()
    config_rows = session.exec(
        select(StoredConfig.name, config_root)
        .where(StoredConfig.project_id == ds.project_id)
        .distinct()
    ).all()
    usage = DatasetUsage(configs=sorted({name for name, root in config_rows if names_it(root)}))
    # Counted in the database: a project may have thousands of runs but few distinct roots.
    run_root = col(Run.config)[("data", "root")].as_string()
    run_rows = session.exec(
        select(Run.status, run_root, func.count())
        .where(Run.project_id == ds.project_id)
        .group_by(col(Run.status), run_root)
    ).all()
    for status, root, n in run_rows:
        if not names_it(root):
            continue
        if RunStatus(status) in TERMINAL:
            usage.finished_runs += n
        else:
            usage.unfinished_runs += n
    return usage


def delete_dataset(session: Session, dataset_id: int, datasets_dir: Path) -> DatasetUsage:
    """Unregister a dataset: the row goes, the folder stays. Refused while a run that has not
    finished reads the folder (unregistering is often the step before moving or removing
    it). Returns what still names the folder; all of it keeps working."""
    ds = get_dataset(session, dataset_id)
    usage = dataset_usage(session, ds, datasets_dir)
    if usage.unfinished_runs:
        raise Conflict(
            f"dataset {ds.name!r}: {usage.unfinished_runs} queued or running run(s) read its "
            "folder; wait for them to finish or cancel them first"
        )
    session.delete(ds)
    session.flush()
    return usage
