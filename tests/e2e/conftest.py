"""The real app as a user starts it: `python app.py` in a subprocess, on a real SQLite file,
joined to the session's real Ray cluster (2 pretend GPUs), with the digits dataset."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO


@dataclass
class AppServer:
    url: str
    datasets_dir: Path
    storage_dir: Path
    log_path: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app_server(ray_dashboard: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    from trainyard.demo_data import make_digits

    base = tmp_path_factory.mktemp("app")
    datasets, storage = base / "datasets", base / "storage"
    make_digits(datasets)
    port = _free_port()
    log_path = base / "app.log"
    env = {**os.environ, "TRAINYARD_THREADS_PER_RUN": "1", "TRAINYARD_CACHE_DIR": str(base / "c")}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "app.py",
                "--port",
                str(port),
                "--ray-address",
                ray_dashboard,
                "--datasets-dir",
                str(datasets),
                "--storage",
                str(storage),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(
                    f"app did not start:\n{log_path.read_text()[-3000:]}"
                ) from None
            time.sleep(0.5)
    yield AppServer(url, datasets, storage, log_path)
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
