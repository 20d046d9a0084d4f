"""The control loop against a hand-written fake of Ray's job API (the real one is covered by
the integration tests): scheduling, log following, state mapping, retries, cancel, restart."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from trainyard.platform import projects, runlogs, runs
from trainyard.platform.control import (
    Capacity,
    ControlPlane,
    JobRequest,
    JobView,
)
from trainyard.platform.jobs import JobState
from trainyard.platform.status import FailureReason, RunStatus

CONFIG = {"data": {"root": "/data/digits"}, "loop": {"epochs": 2}}


@dataclass
class FakeJob:
    req: JobRequest
    view: JobView = field(default_factory=lambda: JobView(JobState.PENDING))
    log: str = ""


@dataclass
class FakeJobs:
    gpus: int = 2
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)

    def capacity(self) -> Capacity:
        return Capacity(gpus=self.gpus, cpus=4)

    def submit(self, req: JobRequest) -> None:
        assert req.submission_id not in self.jobs, "duplicate submission id"
        self.jobs[req.submission_id] = FakeJob(req)

    def status(self, submission_id: str) -> JobView | None:
        job = self.jobs.get(submission_id)
        return job.view if job else None

    def logs(self, submission_id: str) -> str:
        return self.jobs[submission_id].log

    def stop(self, submission_id: str) -> None:
        self.stopped.append(submission_id)
        self.jobs[submission_id].view = JobView(JobState.STOPPED)

    def set(self, sid: str, phase: JobState, exit_code: int | None = None) -> None:
        self.jobs[sid].view = JobView(phase, exit_code=exit_code, node="node-1")


@pytest.fixture
def fake() -> FakeJobs:
    return FakeJobs()


@pytest.fixture
def plane(engine: Engine, fake: FakeJobs, tmp_path: Path) -> ControlPlane:
    return ControlPlane(engine, fake, tmp_path)


def submit(engine: Engine, n: int = 1, **kw) -> list[int]:  # type: ignore[no-untyped-def]
    with Session(engine, expire_on_commit=False) as s:
        project = projects.list_projects(s) or [projects.create_project(s, "p")]
        ids = [runs.submit_run(s, project[0].id, CONFIG, **kw).id for _ in range(n)]
        s.commit()
    return ids  # type: ignore[return-value]


def get(engine: Engine, run_id: int):  # type: ignore[no-untyped-def]
    with Session(engine, expire_on_commit=False) as s:
        return runs.get_run(s, run_id)


def test_schedules_up_to_capacity_in_priority_order(engine, plane, fake) -> None:  # type: ignore[no-untyped-def]
    low = submit(engine, 2)
    high = submit(engine, 1, priority=10)
    assert plane.schedule() == [high[0], low[0]]
    assert plane.schedule() == []  # both devices busy
    req = fake.jobs[get(engine, high[0]).submission_id].req
    assert req.num_gpus == 1 and "--resume" in req.entrypoint
    assert req.metadata["trainyard_run_id"] == str(high[0])
    assert Path(get(engine, high[0]).run_dir, "submitted_config.yaml").exists()


def test_follows_complete_lines_and_maps_success(engine, plane, fake) -> None:  # type: ignore[no-untyped-def]
    (rid,) = submit(engine)
    plane.tick()
    sid = get(engine, rid).submission_id
    fake.set(sid, JobState.RUNNING)
    fake.jobs[sid].log = "one\ntwo\nthr"
    plane.tick()
    run = get(engine, rid)
    assert run.status == RunStatus.RUNNING and run.node == "node-1"
    fake.jobs[sid].log = "one\ntwo\nthree\nlast line without newline"
    fake.set(sid, JobState.SUCCEEDED)
    plane.tick()
    run = get(engine, rid)
    assert run.status == RunStatus.SUCCEEDED
    with Session(engine) as s:
        lines = runlogs.tail(s, rid, 10)
    assert [(r.seq, r.line) for r in lines] == [
        (0, "one"),
        (1, "two"),
        (2, "three"),
        (3, "last line without newline"),
    ]


def test_a_restarted_plane_neither_repeats_nor_skips_lines(engine, fake, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (rid,) = submit(engine)
    first = ControlPlane(engine, fake, tmp_path)
    first.tick()
    sid = get(engine, rid).submission_id
    fake.set(sid, JobState.RUNNING)
    fake.jobs[sid].log = "".join(f"line {i}\n" for i in range(10))
    first.tick()
    fake.jobs[sid].log += "".join(f"line {i}\n" for i in range(10, 25))  # while "down"
    second = ControlPlane(engine, fake, tmp_path)
    second.tick()
    with Session(engine) as s:
        lines = runlogs.tail(s, rid, 100)
    assert [r.seq for r in lines] == list(range(25))
    assert [r.line for r in lines] == [f"line {i}" for i in range(25)]


def test_killed_attempt_is_retried_then_fails_when_out_of_retries(engine, plane, fake) -> None:  # type: ignore[no-untyped-def]
    (rid,) = submit(engine, max_retries=1)
    plane.tick()
    first = get(engine, rid).submission_id
    fake.set(first, JobState.FAILED, exit_code=-9)
    plane.reconcile()
    run = get(engine, rid)
    assert run.status == RunStatus.QUEUED and run.failure_reason == FailureReason.KILLED
    plane.schedule()
    run = get(engine, rid)
    assert run.status == RunStatus.STARTING and run.attempt == 2 and run.submission_id != first
    fake.set(run.submission_id, JobState.FAILED, exit_code=-9)
    plane.tick()
    run = get(engine, rid)
    assert run.status == RunStatus.FAILED and run.failure_reason == FailureReason.KILLED


def test_bad_input_is_not_retried(engine, plane, fake) -> None:  # type: ignore[no-untyped-def]
    (rid,) = submit(engine, max_retries=3)
    plane.tick()
    fake.set(get(engine, rid).submission_id, JobState.FAILED, exit_code=2)
    plane.tick()
    run = get(engine, rid)
    assert run.status == RunStatus.FAILED and run.failure_reason == FailureReason.BAD_INPUT


def test_cancel_of_a_running_run_stops_the_job(engine, plane, fake) -> None:  # type: ignore[no-untyped-def]
    (rid,) = submit(engine)
    plane.tick()
    sid = get(engine, rid).submission_id
    fake.set(sid, JobState.RUNNING)
    plane.tick()
    with Session(engine) as s:
        runs.request_cancel(s, rid)
        s.commit()
    plane.tick()  # stop sent
    plane.tick()  # STOPPED seen
    assert fake.stopped == [sid]
    assert get(engine, rid).status == RunStatus.CANCELLED


def test_a_vanished_job_fails_as_lost(engine, plane, fake) -> None:  # type: ignore[no-untyped-def]
    (rid,) = submit(engine)
    plane.tick()
    sid = get(engine, rid).submission_id
    fake.set(sid, JobState.RUNNING)
    plane.tick()
    del fake.jobs[sid]
    plane.reconcile()
    run = get(engine, rid)
    assert run.status == RunStatus.FAILED and run.failure_reason == FailureReason.JOB_LOST


def test_multi_device_runs_go_through_ray_train(engine, plane, fake) -> None:  # type: ignore[no-untyped-def]
    (rid,) = submit(engine, devices=2)
    plane.tick()
    req = fake.jobs[get(engine, rid).submission_id].req
    assert "trainyard.platform.ray_train_entry" in req.entrypoint
    assert req.num_gpus == 0 and req.entrypoint[req.entrypoint.index("--workers") + 1] == "2"


def test_cpu_only_cluster_counts_cpu_slots(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake = FakeJobs(gpus=0)
    plane = ControlPlane(engine, fake, tmp_path, threads_per_run=2)
    submit(engine, 3)
    assert len(plane.schedule()) == 2  # 4 CPUs / 2 threads per run
    req = next(iter(fake.jobs.values())).req
    assert req.num_gpus == 0 and req.num_cpus == 2


def test_a_queued_run_larger_than_the_cluster_fails_instead_of_blocking(
    engine, plane, fake
) -> None:  # type: ignore[no-untyped-def]
    (big,) = submit(engine, devices=3, priority=5)
    (small,) = submit(engine)
    assert plane.schedule() == [small]
    run = get(engine, big)
    assert run.status == RunStatus.FAILED and run.failure_reason == FailureReason.UNSATISFIABLE
