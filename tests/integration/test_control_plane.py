"""The control plane on a real local Ray cluster with 2 pretend GPUs, a real SQLite file and
real trainers: the queue, GPU booking, log following across an app restart, retries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tests.conftest import REPO
from tests.ray_fixtures import wait_for
from trainyard.platform import projects, runlogs, runs
from trainyard.platform.control import Capacity, ControlPlane
from trainyard.platform.db import make_engine, migrate
from trainyard.platform.errors import Refused
from trainyard.platform.models import Run, RunLog
from trainyard.platform.ray_backend import RayJobBackend
from trainyard.platform.service import Platform
from trainyard.platform.status import FailureReason, RunStatus
from trainyard.settings import Settings
from trainyard.trainer.events import parse_event

pytestmark = pytest.mark.slow


def digits_config(root: Path, epochs: int = 1, **loop: Any) -> dict[str, Any]:
    return {
        "data": {"root": str(root), "batch_size": 64, "workers": 1},
        "model": {"name": "resnet-tiny"},
        "augmentation": {"preset": "none"},
        "optimizer": {"lr": 0.003},
        "loop": {"epochs": epochs, "threads": 1, "progress_interval_s": 0.5, **loop},
    }


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'trainyard.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def plane(db: Engine, ray_dashboard: str, tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(db, RayJobBackend(ray_dashboard), tmp_path / "storage", threads_per_run=1)
    yield cp
    cp.stop()
    with Session(db) as s:  # leave no job running into the next test
        for run in runs.active_runs(s):
            if run.submission_id:
                cp.jobs.stop(run.submission_id)


def project_id(engine: Engine) -> int:
    with Session(engine) as s:
        existing = projects.list_projects(s)
        p = existing[0] if existing else projects.create_project(s, "itest")
        s.commit()
        return p.id  # type: ignore[return-value]


def submit(engine: Engine, config: dict[str, Any], **kw: Any) -> int:
    with Session(engine, expire_on_commit=False) as s:
        run = runs.submit_run(s, project_id(engine), config, **kw)
        s.commit()
        return run.id  # type: ignore[return-value]


def get(engine: Engine, run_id: int) -> Run:
    with Session(engine, expire_on_commit=False) as s:
        return runs.get_run(s, run_id)


def stored_lines(engine: Engine, run_id: int) -> list[RunLog]:
    with Session(engine) as s:
        return list(s.exec(select(RunLog).where(RunLog.run_id == run_id).order_by(RunLog.seq)))


def events_of(engine: Engine, run_id: int, name: str) -> list[dict[str, Any]]:
    evs = (parse_event(r.line) for r in stored_lines(engine, run_id))
    return [e for e in evs if e and e["event"] == name]


def test_five_runs_share_two_gpus_by_priority(db, plane, digits_root) -> None:  # type: ignore[no-untyped-def]
    low = [submit(db, digits_config(digits_root), name=f"low {i}") for i in range(4)]
    high = submit(db, digits_config(digits_root), name="high", priority=10)
    peak = {"active": 0}
    stop = threading.Event()

    def watch() -> None:  # sample the database while the loop runs
        while not stop.is_set():
            with Session(db) as s:
                peak["active"] = max(peak["active"], len(runs.active_runs(s)))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    plane.start(period_s=0.5)
    everyone = [*low, high]
    try:
        wait_for(
            lambda: all(get(db, r).status.is_terminal() for r in everyone),
            600,
            "all five runs to end",
        )
    finally:
        stop.set()
        plane.stop()
    final = {r: get(db, r) for r in everyone}
    assert {r: str(x.status) for r, x in final.items()} == {r: "SUCCEEDED" for r in everyone}
    assert peak["active"] <= 2
    # The high-priority run, submitted last, started in the first wave.
    started = sorted(everyone, key=lambda r: final[r].started_at)  # type: ignore[arg-type,return-value]
    assert high in started[:2] and started.index(high) < started.index(low[2])
    # Runs that overlapped in time held different GPUs.
    devices = {r: events_of(db, r, "start")[0]["cuda_visible_devices"] for r in everyone}
    assert set(devices.values()) <= {"0", "1"}
    for a in everyone:
        for b in everyone:
            ra, rb = final[a], final[b]
            overlap = a < b and ra.started_at < rb.ended_at and rb.started_at < ra.ended_at  # type: ignore[operator]
            if overlap:
                assert devices[a] != devices[b], (a, b, devices)
    for r in everyone:
        assert final[r].log_lines > 5
        with Session(db) as s:
            names = {(m.split, m.name, m.epoch) for m in runlogs.metric_series(s, r)}
        assert ("val", "accuracy", 1) in names and ("train", "loss", 1) in names
    # Runs are Ray jobs with their metadata.
    listed = {j.submission_id: j for j in plane.jobs.jobs.list_submissions()}  # type: ignore[attr-defined]
    for r in everyone:
        job = listed[final[r].submission_id]  # type: ignore[index]
        assert job.metadata["trainyard_run_id"] == str(r) and job.metadata["project"] == "itest"


def test_more_devices_than_the_cluster_has_is_refused_at_submit(
    db, ray_dashboard, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    backend = RayJobBackend(ray_dashboard)
    plat = Platform(
        Settings(storage_dir=tmp_path),
        db,
        jobs=backend,
        control=ControlPlane(db, backend, tmp_path),
    )
    with pytest.raises(Refused, match="asks for 3 but the whole cluster has 2"):
        plat.submit(project_id(db), digits_config(tmp_path), devices=3)
    with Session(db) as s:
        assert runs.queued_runs(s) == []


def _kill_trainer_when_checkpointed(db: Engine, run_id: int) -> int:
    """Wait for the first epoch's checkpoint, then SIGKILL the trainer process."""
    wait_for(lambda: events_of(db, run_id, "checkpoint"), 300, "a checkpoint")
    pid = events_of(db, run_id, "start")[-1]["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.parametrize("max_retries", [1, 0])
def test_sigkilled_trainer_is_retried_from_its_checkpoint(
    db, plane, digits_root, max_retries
) -> None:  # type: ignore[no-untyped-def]
    rid = submit(db, digits_config(digits_root, epochs=4), max_retries=max_retries)
    plane.start(period_s=0.5)
    _kill_trainer_when_checkpointed(db, rid)
    run = wait_for(lambda: (r := get(db, rid)).status.is_terminal() and r, 400, "the run to end")
    if max_retries == 0:
        assert run.status == RunStatus.FAILED and run.failure_reason == FailureReason.KILLED
        assert run.failure_message and run.attempt == 1
        return
    assert run.status == RunStatus.SUCCEEDED and run.attempt == 2
    resumed = events_of(db, rid, "resume")
    assert resumed and resumed[0]["epoch"] >= 1
    assert any("resuming from" in r.line for r in stored_lines(db, rid))
    val_epochs = [e["epoch"] for e in events_of(db, rid, "metrics") if e["split"] == "val"]
    assert val_epochs[-1] == 4  # finished the configured epochs


def _serve(db_url: str, storage: Path, dashboard: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRAINYARD_DB_URL": db_url,
        "TRAINYARD_STORAGE_DIR": str(storage),
        "TRAINYARD_RAY_ADDRESS": dashboard,
        "TRAINYARD_THREADS_PER_RUN": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "trainyard.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_app_killed_and_restarted_keeps_following(db, ray_dashboard, digits_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = str(db.url)
    storage = tmp_path / "storage"
    ids = [submit(db, digits_config(digits_root, epochs=4), name=f"r{i}") for i in range(2)]
    serve = _serve(url, storage, ray_dashboard)
    try:
        wait_for(
            lambda: all(
                get(db, r).status == RunStatus.RUNNING and get(db, r).log_lines > 3 for r in ids
            ),
            300,
            "both runs running with logs",
        )
        serve.send_signal(signal.SIGKILL)
        serve.wait(30)
        before = {r: get(db, r).log_lines for r in ids}
        time.sleep(4)  # the jobs keep writing while nobody follows
        serve = _serve(url, storage, ray_dashboard)
        wait_for(lambda: all(get(db, r).status.is_terminal() for r in ids), 400, "both to end")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    backend = RayJobBackend(ray_dashboard)
    for r in ids:
        run = get(db, r)
        assert run.status == RunStatus.SUCCEEDED
        stored = stored_lines(db, r)
        assert [x.seq for x in stored] == list(range(len(stored)))
        ray_lines = backend.logs(run.submission_id).split("\n")  # type: ignore[arg-type]
        if ray_lines[-1] == "":
            ray_lines.pop()
        assert [x.line for x in stored] == ray_lines
        assert len(stored) > before[r]


class CpuOnlyBackend(RayJobBackend):
    """The real Ray backend, scheduling by CPU slots as on a cluster without GPUs: the
    2-worker run then uses gloo on CPUs, which this machine has."""

    def capacity(self) -> Capacity:
        return Capacity(gpus=0, cpus=4)


def test_two_device_run_trains_with_two_ray_train_workers(
    db, ray_dashboard, digits_root, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    plane = ControlPlane(db, CpuOnlyBackend(ray_dashboard), tmp_path / "storage", threads_per_run=1)
    rid = submit(db, digits_config(digits_root, epochs=2), devices=2)
    plane.start(period_s=0.5)
    try:
        run = wait_for(lambda: (r := get(db, rid)).status.is_terminal() and r, 400, "the run")
    finally:
        plane.stop()
    assert run.status == RunStatus.SUCCEEDED, [x.line for x in stored_lines(db, rid)][-30:]
    start = events_of(db, rid, "start")
    assert len(start) == 1 and start[0]["world_size"] == 2  # one stream of events, 2 ranks
    lines = [x.line for x in stored_lines(db, rid)]
    assert sum("worker rank" in line for line in lines) == 2
    val_epochs = [e["epoch"] for e in events_of(db, rid, "metrics") if e["split"] == "val"]
    assert val_epochs == [1, 2]
