"""Ray jobs for runs, against one real local Ray head with two pretend GPUs.

Timings on a 2-core machine: the head starts in ~15 s, a job goes from submit to RUNNING in
3-7 s, and Ray Train spends ~30-50 s starting its workers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.ray_fixtures import RAY_TEST_CPUS, RAY_TEST_GPUS, wait_for
from trainyard.platform.jobs import (
    DISTRIBUTED_ENTRY_MODULE,
    JobAlreadyExists,
    JobInfo,
    JobNotFound,
    JobState,
    RayJobs,
    RayJobsError,
    RayUnavailable,
    entrypoint_resources,
    is_distributed_entrypoint,
    job_runtime_env,
)
from trainyard.platform.ray_cluster import (
    LocalRayHead,
    RayClusterError,
    cluster_resources,
    connect,
    dashboard_auth_mode,
    dashboard_url_from_address,
    free_port,
    local_gpu_stats,
    ray_env,
)
from trainyard.trainer.events import parse_event

START_TIMEOUT_S = 120  # submit to RUNNING; generous: other work may share the 2 cores
END_TIMEOUT_S = 180


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def python(script: str, *args: str) -> list[str]:
    return [sys.executable, "-c", script, *args]


def wait_state(
    jobs: RayJobs, sid: str, accept: Callable[[JobState], bool], timeout_s: float, what: str
) -> JobInfo:
    def check() -> JobInfo | None:
        info = jobs.status(sid)
        return info if info is not None and accept(info.state) else None

    return wait_for(check, timeout_s, f"job {sid} {what}")


def wait_ended(jobs: RayJobs, sid: str, timeout_s: float = END_TIMEOUT_S) -> JobInfo:
    return wait_state(jobs, sid, JobState.is_terminal, timeout_s, "to end")


@pytest.fixture(scope="module")
def jobs(ray_dashboard: str) -> RayJobs:
    return RayJobs(ray_dashboard)


# ---- pure policies: no Ray needed ----------------------------------------------------------


def test_entrypoint_resources_book_each_gpu_once() -> None:
    assert entrypoint_resources(1, 2, distributed=False) == {
        "entrypoint_num_gpus": 1,
        "entrypoint_num_cpus": 2,
    }
    assert entrypoint_resources(0, 2, distributed=False) == {"entrypoint_num_cpus": 2}
    assert entrypoint_resources(0, 0, distributed=True) == {}  # the workers book
    with pytest.raises(ValueError, match="must book none"):
        entrypoint_resources(2, 0, distributed=True)
    with pytest.raises(ValueError, match=DISTRIBUTED_ENTRY_MODULE):
        entrypoint_resources(2, 0, distributed=False)


def test_distributed_entrypoint_is_recognised_in_lists_and_strings() -> None:
    argv = [sys.executable, "-m", DISTRIBUTED_ENTRY_MODULE, "--workers", "2"]
    assert is_distributed_entrypoint(argv)
    assert is_distributed_entrypoint(" ".join(argv))
    assert not is_distributed_entrypoint([sys.executable, "-m", "trainyard.trainer"])


def test_runtime_env_makes_trainyard_importable_and_keeps_caller_env() -> None:
    env = job_runtime_env({"OMP_NUM_THREADS": "3", "PYTHONPATH": "/extra"}, None)["env_vars"]
    root = str(Path(__file__).resolve().parents[2])
    assert env["OMP_NUM_THREADS"] == "3" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep) == [root, "/extra"]
    uploaded = job_runtime_env(None, "/some/dir")
    assert uploaded["working_dir"] == "/some/dir" and "PYTHONPATH" not in uploaded["env_vars"]


def test_ray_env_sets_auth_mode_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    env = ray_env()
    assert env["RAY_AUTH_MODE"] == "disabled" and env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert int(env["RAY_JOB_START_TIMEOUT_SECONDS"]) >= 3600
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert ray_env()["RAY_AUTH_MODE"] == "token"
    with pytest.raises(RayClusterError, match="disabled, token"):
        ray_env("tokens")


def test_addresses_are_dashboard_urls() -> None:
    assert dashboard_url_from_address("head:8265") == "http://head:8265"
    assert dashboard_url_from_address("https://head:8265/") == "https://head:8265"
    with pytest.raises(RayClusterError, match="dashboard"):
        dashboard_url_from_address("ray://head:10001")


def test_no_nvml_means_no_gpus() -> None:
    stats = local_gpu_stats()  # a CPU machine: [], not an error; a GPU machine: real numbers
    assert all(s.memory_total_bytes > 0 for s in stats)


# ---- the cluster ---------------------------------------------------------------------------


@pytest.mark.slow
def test_cluster_resources_report_the_pretend_gpus(ray_dashboard: str) -> None:
    res = cluster_resources(ray_dashboard)
    assert res.total_gpus == RAY_TEST_GPUS and res.total_cpus == RAY_TEST_CPUS
    (node,) = res.nodes
    assert node.alive and node.is_head and node.ip and node.node_id


@pytest.mark.slow
def test_joining_a_running_head_never_stops_it(ray_dashboard: str) -> None:
    with connect(ray_dashboard) as conn:
        assert conn.dashboard_url == ray_dashboard and not conn.embedded
        assert conn.resources().total_gpus == RAY_TEST_GPUS
    port = int(ray_dashboard.rsplit(":", 1)[1])
    head = LocalRayHead(dashboard_port=port, reuse_existing=True)
    assert head.start() == ray_dashboard and not head.owned
    head.stop()
    assert dashboard_auth_mode(ray_dashboard) == "disabled"  # still up


@pytest.mark.slow
def test_connect_to_nothing_says_how_to_fix_it() -> None:
    with pytest.raises(RayClusterError, match="no Ray dashboard answers"):
        connect("http://127.0.0.1:9")


@pytest.mark.slow
def test_token_cluster_refuses_a_client_without_token_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pitfall RAY_AUTH_MODE is set for: a head in token mode, a client that sends none.
    monkeypatch.setenv("RAY_AUTH_TOKEN", "trainyard-test-token-" + uuid.uuid4().hex)
    temp_dir = tempfile.mkdtemp(prefix="ty-tok-", dir="/tmp")
    try:
        with LocalRayHead(
            dashboard_port=free_port(), reuse_existing=False, auth_mode="token"
        ) as head:
            url = head.start(num_gpus=0, num_cpus=1, temp_dir=temp_dir)
            assert dashboard_auth_mode(url) == "token"
            with pytest.raises(RayClusterError, match="RAY_AUTH_MODE=token"):
                connect(url)  # this process runs with RAY_AUTH_MODE=disabled
            with pytest.raises(RayUnavailable, match="RAY_AUTH_MODE=token"):
                RayJobs(url).list_submissions()
        assert dashboard_auth_mode(url) is None  # stopped with the context
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_ray_address_in_env_would_redirect_clients(
    jobs: RayJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    with pytest.raises(RayJobsError, match="unset it"):
        RayJobs(jobs.dashboard_url).status("anything")


# ---- jobs ----------------------------------------------------------------------------------

# Each job marks itself started, then waits for the other's mark: both finish only if both
# ran at the same time, and neither needs to sleep a guessed amount.
PAIR_SCRIPT = """
import os, sys, time, pathlib
me, other = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
print("CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"), flush=True)
print("OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "<unset>"), flush=True)
me.touch()
deadline = time.time() + 120
while not other.exists():
    if time.time() > deadline:
        sys.exit("the other job never started: the two did not run at the same time")
    time.sleep(0.2)
print("saw the other job", flush=True)
"""


@dataclass
class Pair:
    ids: list[str]
    infos: list[JobInfo]
    logs: list[str]


@pytest.fixture(scope="module")
def gpu_pair(jobs: RayJobs, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """Two one-GPU jobs submitted together and run to the end."""
    tmp = tmp_path_factory.mktemp("pair")
    marks = [str(tmp / "a"), str(tmp / "b")]
    ids = [new_id("pair-a"), new_id("pair-b")]
    for i, sid in enumerate(ids):
        jobs.submit(
            sid,
            python(PAIR_SCRIPT, marks[i], marks[1 - i]),
            num_gpus=1,
            num_cpus=1,
            env={"OMP_NUM_THREADS": "1"},
            metadata={"project": "demo", "run": f"run-{i}"},
        )
    infos = [wait_ended(jobs, sid) for sid in ids]
    return Pair(ids, infos, [jobs.logs(sid) for sid in ids])


@pytest.mark.slow
def test_two_one_gpu_jobs_run_at_once_on_different_gpus(gpu_pair: Pair) -> None:
    for info, log in zip(gpu_pair.infos, gpu_pair.logs, strict=True):
        assert info.state == JobState.SUCCEEDED, log
        assert "saw the other job" in log and "OMP_NUM_THREADS=1" in log
    devices = {
        line.split("=", 1)[1]
        for log in gpu_pair.logs
        for line in log.splitlines()
        if line.startswith("CUDA_VISIBLE_DEVICES=")
    }
    assert devices == {"0", "1"}


@pytest.mark.slow
def test_status_has_times_exit_code_and_node(gpu_pair: Pair) -> None:
    info = gpu_pair.infos[0]
    assert info.submission_id == gpu_pair.ids[0] and info.driver_exit_code == 0
    assert info.start_time and info.end_time and info.start_time <= info.end_time
    assert info.driver_node_id and info.driver_node_ip
    assert PAIR_SCRIPT.strip().splitlines()[0] in info.entrypoint


@pytest.mark.slow
def test_list_submissions_carries_metadata(jobs: RayJobs, gpu_pair: Pair) -> None:
    listed = {j.submission_id: j for j in jobs.list_submissions()}
    for i, sid in enumerate(gpu_pair.ids):
        assert listed[sid].metadata == {"project": "demo", "run": f"run-{i}"}
        assert listed[sid].state == JobState.SUCCEEDED


@pytest.mark.slow
def test_stop_a_running_job(jobs: RayJobs) -> None:
    sid = new_id("stop")
    jobs.submit(sid, python("import time; print('sleeping', flush=True); time.sleep(600)"))
    wait_for(lambda: "sleeping" in jobs.logs(sid), START_TIMEOUT_S, f"job {sid} to print")
    assert jobs.stop(sid) is True
    info = wait_ended(jobs, sid, timeout_s=60)
    assert info.state == JobState.STOPPED and info.end_time is not None
    assert jobs.stop(sid) is False  # nothing left to stop: cancelling twice is harmless


@pytest.mark.slow
def test_duplicate_submission_id_is_a_clear_error(jobs: RayJobs) -> None:
    sid = new_id("dup")
    jobs.submit(sid, python("pass"), num_cpus=0)
    with pytest.raises(JobAlreadyExists, match=sid) as err:
        jobs.submit(sid, python("pass"), num_cpus=0)
    assert err.value.submission_id == sid
    assert wait_ended(jobs, sid).state == JobState.SUCCEEDED


@pytest.mark.slow
def test_unknown_job_is_none_not_an_error(jobs: RayJobs) -> None:
    assert jobs.status("no-such-job") is None
    assert jobs.stop("no-such-job") is False
    with pytest.raises(JobNotFound, match="no-such-job"):
        jobs.logs("no-such-job")


@pytest.mark.slow
def test_failed_job_reports_its_exit_code(jobs: RayJobs) -> None:
    sid = new_id("fail")
    jobs.submit(sid, python("import sys; print('bad input'); sys.exit(2)"), num_cpus=0)
    info = wait_ended(jobs, sid)
    assert info.state == JobState.FAILED and info.driver_exit_code == 2
    assert "bad input" in jobs.logs(sid)


@pytest.mark.slow
def test_tail_follows_the_log_to_the_end(jobs: RayJobs) -> None:
    sid = new_id("tail")
    script = "import time\nfor i in range(3):\n    print(f'line {i}', flush=True); time.sleep(0.5)"
    jobs.submit(sid, python(script), num_cpus=0)

    async def follow() -> str:
        return "".join([chunk async for chunk in jobs.tail(sid)])

    text = asyncio.run(asyncio.wait_for(follow(), timeout=END_TIMEOUT_S))
    assert all(f"line {i}" in text for i in range(3))  # tail ends when the job does
    assert wait_ended(jobs, sid).state == JobState.SUCCEEDED


# ---- Ray Train -----------------------------------------------------------------------------


@pytest.mark.slow
def test_ray_train_entry_runs_two_cpu_workers(
    jobs: RayJobs, digits_root: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(digits_root), "image_size": 32, "batch_size": 64},
                "model": {"name": "resnet-tiny"},
                "loop": {"epochs": 1, "threads": 1, "progress_interval_s": 0.5},
            }
        )
    )
    run_dir = tmp_path / "run"
    sid = new_id("train")
    entry = [
        sys.executable,
        "-m",
        DISTRIBUTED_ENTRY_MODULE,
        "--config",
        str(cfg),
        "--run-dir",
        str(run_dir),
        "--workers",
        "2",
        "--threads",
        "1",
    ]
    jobs.submit(sid, entry, num_gpus=0, num_cpus=0, env={"OMP_NUM_THREADS": "1"})
    try:
        info = wait_ended(jobs, sid, timeout_s=300)
    finally:
        log = jobs.logs(sid)
        print(log[-6000:])  # shown when the test fails
    assert info.state == JobState.SUCCEEDED, log[-4000:]
    for rank in (0, 1):
        assert f"worker rank {rank} of world size 2" in log, log[-4000:]
    assert "process group of 2 workers is up" in log
    # Worker lines arrive unprefixed, so the platform parses rank 0's events as usual.
    events = [e for e in map(parse_event, log.splitlines()) if e is not None]
    assert [e["event"] for e in events if e["event"] in ("start", "finished")] == [
        "start",
        "finished",
    ]
    assert events[0]["world_size"] == 2  # the trainer saw the process group: DDP
    assert log.count("ray_train_entry: worker rank 0") == 1  # not duplicated by Ray Train
    assert (run_dir / "results.json").exists()


@pytest.mark.slow
def test_ray_train_entry_refuses_a_bad_config_before_starting_workers(
    jobs: RayJobs, digits_root: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"root": str(digits_root)}, "optimizer": {"lr": -1}}))
    sid = new_id("badcfg")
    entry = [sys.executable, "-m", DISTRIBUTED_ENTRY_MODULE, "--config", str(cfg)]
    entry += ["--run-dir", str(tmp_path / "run"), "--workers", "2"]
    jobs.submit(sid, entry, num_gpus=0, num_cpus=0)
    info = wait_ended(jobs, sid)
    assert info.state == JobState.FAILED and info.driver_exit_code == 2
    log = jobs.logs(sid)
    assert "optimizer.lr" in log and "starting 2 workers" not in log
