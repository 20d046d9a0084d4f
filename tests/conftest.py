"""Shared fixtures: real data on disk in tmp folders, and the trainer's CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

# Tests never download: a model id that is not on disk must fail, not fetch.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRAINYARD_CACHE_DIR", "/tmp/trainyard-test-cache")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # The trainers under test run in subprocesses; two torch processes each spinning 2 threads
    # on a 2-core machine run 20-50x slower (DESIGN.md), so this process keeps to one.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainyard.demo_data import make_digits

    return make_digits(tmp_path_factory.mktemp("datasets"))


def write_image(path: Path, rng: np.random.Generator, color: int, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
    arr[..., color % 3] += 180  # each class a different dominant channel
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """An ImageFolder tree of small PNGs: `make_dataset(classes=..., splits=..., per_class=...)`."""

    def make(
        classes: tuple[str, ...] = ("a", "b", "c"),
        splits: tuple[str, ...] = ("train", "val", "test"),
        per_class: int = 6,
        name: str = "ds",
    ) -> Path:
        root = tmp_path / name
        rng = np.random.default_rng(0)
        for split in splits:
            for k, cls in enumerate(classes):
                for i in range(per_class):
                    write_image(root / split / cls / f"{i:03d}.png", rng, k)
        return root

    return make


def _write_config(tmp_path: Path, data_root: Path, **sections: dict[str, object]) -> Path:
    cfg: dict[str, object] = {
        "data": {"root": str(data_root), "batch_size": 16, "workers": 1},
        "model": {"name": "resnet-tiny"},
        "loop": {"epochs": 1, "threads": 1, "progress_interval_s": 0.5},
    }
    for key, value in sections.items():
        merged = dict(cfg.get(key, {}))  # type: ignore[call-overload]
        merged.update(value)
        cfg[key] = merged
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """`write_config(data_root, loop={"epochs": 3}, ...)`: a small config file in tmp_path."""

    def write(data_root: Path, **sections: dict[str, object]) -> Path:
        return _write_config(tmp_path, data_root, **sections)

    return write


def trainer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainyard.trainer", *args]


@pytest.fixture
def run_trainer() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m trainyard.trainer ARGS` to completion; returns the CompletedProcess."""

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            trainer_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO
        )

    return run


def _db_urls() -> list[str]:
    # SQLite always; PostgreSQL too when CI (or a developer) points us at one.
    pg = os.environ.get("TRAINYARD_TEST_POSTGRES_URL")
    return ["sqlite", pg] if pg else ["sqlite"]


@pytest.fixture(params=_db_urls(), ids=lambda u: "sqlite" if u == "sqlite" else "postgres")
def engine(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A migrated, empty database: a temp SQLite file, or a fresh schema on PostgreSQL."""
    from sqlalchemy import text

    from trainyard.platform.db import make_engine, migrate

    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
        migrate(eng)
        yield eng
        eng.dispose()
        return
    base = make_engine(request.param)
    schema = f"t_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    with base.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    eng = make_engine(request.param, search_path=schema)
    migrate(eng)
    yield eng
    eng.dispose()
    with base.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    base.dispose()


@pytest.fixture
def session(engine):  # type: ignore[no-untyped-def]
    from sqlmodel import Session

    with Session(engine, expire_on_commit=False) as s:
        yield s


# The session's real Ray head (2 pretend GPUs) and the condition helper, for every test folder.
from tests.ray_fixtures import ray_dashboard, wait_for  # noqa: E402, F401
