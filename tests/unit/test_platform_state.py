"""The control plane's state: projects, the run queue, status moves, logs and metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from trainyard.platform import projects, runlogs, runs
from trainyard.platform.errors import Conflict, NotFound, PlatformError, Refused
from trainyard.platform.status import FailureReason, IllegalTransition, RunStatus
from trainyard.trainer.events import format_event

CONFIG = {"data": {"root": "/data/digits"}, "loop": {"epochs": 2}}


@pytest.fixture
def project(session: Session):  # type: ignore[no-untyped-def]
    p = projects.create_project(session, "demo")
    session.commit()
    return p


def test_project_names_are_unique_and_validated(session: Session, project) -> None:
    with pytest.raises(Conflict, match="already exists"):
        projects.create_project(session, "demo")
    with pytest.raises(PlatformError, match="must not be empty"):
        projects.create_project(session, "  ")
    other = projects.create_project(session, "other")
    with pytest.raises(Conflict):
        projects.rename_project(session, other.id, "demo")
    assert projects.rename_project(session, other.id, "renamed").name == "renamed"


def test_queue_order_is_priority_then_age(session: Session, project) -> None:
    a = runs.submit_run(session, project.id, CONFIG, priority=0)
    b = runs.submit_run(session, project.id, CONFIG, priority=5)
    c = runs.submit_run(session, project.id, CONFIG, priority=0)
    d = runs.submit_run(session, project.id, CONFIG, priority=5)
    session.commit()
    assert [r.id for r in runs.queued_runs(session)] == [b.id, d.id, a.id, c.id]


def test_submit_validates_config_and_devices(session: Session, project) -> None:
    with pytest.raises(PlatformError, match="optimizer.lr"):
        runs.submit_run(session, project.id, {**CONFIG, "optimizer": {"lr": -1}})
    with pytest.raises(Refused, match="asks for 3 but the whole cluster has 2"):
        runs.submit_run(session, project.id, CONFIG, devices=3, cluster_devices=2)
    with pytest.raises(PlatformError, match="devices: must be 1 to"):
        runs.submit_run(session, project.id, CONFIG, devices=0)


def test_status_moves_are_checked_in_one_place(session: Session, project) -> None:
    run = runs.submit_run(session, project.id, CONFIG)
    with pytest.raises(IllegalTransition, match="from QUEUED to RUNNING"):
        runs.set_status(session, run, RunStatus.RUNNING)
    runs.set_status(session, run, RunStatus.STARTING)
    assert run.attempt == 1
    runs.set_status(session, run, RunStatus.RUNNING)
    assert run.started_at is not None
    runs.set_status(session, run, RunStatus.SUCCEEDED)
    assert run.ended_at is not None and run.progress == 1.0
    with pytest.raises(IllegalTransition, match="none \\(final\\)"):
        runs.set_status(session, run, RunStatus.QUEUED)


def test_cancel_and_retry(session: Session, project) -> None:
    run = runs.submit_run(session, project.id, CONFIG)
    runs.request_cancel(session, run.id)
    assert run.status == RunStatus.CANCELLED
    with pytest.raises(Conflict, match="already ended"):
        runs.request_cancel(session, run.id)
    runs.retry_run(session, run.id)
    assert run.status == RunStatus.QUEUED and run.ended_at is None
    with pytest.raises(Conflict, match="only failed or cancelled"):
        runs.retry_run(session, run.id)
    runs.set_status(session, run, RunStatus.STARTING)
    runs.set_status(session, run, RunStatus.FAILED, reason=FailureReason.KILLED, message="x")
    assert run.failure_reason == FailureReason.KILLED


def test_delete_project_refused_while_running_then_cascades(session: Session, project) -> None:
    run = runs.submit_run(session, project.id, CONFIG)
    runs.set_status(session, run, RunStatus.STARTING)
    runlogs.ingest_lines(session, run, ["hello"])
    session.commit()
    with pytest.raises(Conflict, match="1 active run"):
        projects.delete_project(session, project.id)
    runs.set_status(session, run, RunStatus.CANCELLED)
    projects.delete_project(session, project.id)
    session.commit()
    assert projects.list_projects(session) == []
    assert runlogs.tail(session, run.id) == []


def test_ingest_numbers_lines_and_extracts_metrics(session: Session, project) -> None:
    run = runs.submit_run(session, project.id, CONFIG)
    runs.set_status(session, run, RunStatus.STARTING)
    lines = [
        "starting",
        format_event("progress", epoch=1, global_step=5, total_steps=20),
        format_event("metrics", epoch=1, split="train", values={"loss": 1.5}, lr=0.01),
        format_event("metrics", epoch=1, split="val", values={"loss": 1.0, "accuracy": 0.6}),
        format_event("metrics", epoch=2, split="val", values={"loss": 0.8, "accuracy": 0.5}),
    ]
    out = runlogs.ingest_lines(session, run, lines[:2])
    assert out.lines == 2 and run.progress == 0.25
    runlogs.ingest_lines(session, run, lines[2:])
    session.commit()
    stored = runlogs.tail(session, run.id, 100)
    assert [r.seq for r in stored] == [0, 1, 2, 3, 4]
    assert [r.line for r in stored] == lines
    assert [r.seq for r in runlogs.lines_after(session, run.id, 2)] == [3, 4]
    assert [r.line for r in runlogs.tail(session, run.id, 2)] == lines[3:]
    series = {(m.split, m.name, m.epoch): m.value for m in runlogs.metric_series(session, run.id)}
    assert series[("train", "lr", 1)] == 0.01 and series[("val", "accuracy", 2)] == 0.5
    assert run.best_metric == 0.6 and run.epoch == 2
    assert run.log_lines == run.attempt_log_lines == 5


def test_project_run_counts(session: Session, project) -> None:
    runs.submit_run(session, project.id, CONFIG)
    r = runs.submit_run(session, project.id, CONFIG)
    runs.request_cancel(session, r.id)
    session.commit()
    counts = projects.run_counts(session, project.id)
    assert counts["QUEUED"] == 1 and counts["CANCELLED"] == 1 and counts["RUNNING"] == 0


def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    from sqlalchemy import text

    from trainyard.platform.db import make_engine

    eng = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with eng.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_datasets_are_confined_to_the_datasets_root(
    session: Session, project, make_dataset, tmp_path: Path
) -> None:
    from trainyard.platform import datasets

    root = make_dataset(per_class=3)  # tmp_path/ds
    ds = datasets.register_dataset(session, project.id, "shapes", "ds", tmp_path)
    assert ds.path == "ds" and ds.scan["classes"] == ["a", "b", "c"]
    assert ds.scan["counts"]["train"] == [3, 3, 3] and ds.scan["unreadable"] == []
    assert ds.scan["sizes"] == [{"width": 16, "height": 16, "count": 27}]
    with pytest.raises(Conflict, match="already has a dataset named 'shapes'"):
        datasets.register_dataset(session, project.id, "shapes", str(root), tmp_path)
    for outside in ("/etc", "../..", str(tmp_path.parent)):
        with pytest.raises(PlatformError, match="outside the datasets root"):
            datasets.register_dataset(session, project.id, "x", outside, tmp_path)
    (root / "train" / "a" / "000.png").write_bytes(b"")
    ds = datasets.rescan_dataset(session, ds.id, tmp_path)
    assert ds.scan["unreadable"] == [{"path": "train/a/000.png", "problem": "empty file (0 bytes)"}]
    with pytest.raises(PlatformError, match="has no train/ folder"):
        datasets.register_dataset(session, project.id, "y", "ds/train/a", tmp_path)


def test_configs_are_validated_and_versioned(session: Session, project) -> None:
    from trainyard.platform import configs

    with pytest.raises(PlatformError, match="optimizer.lr"):
        configs.save_config(session, project.id, "c", {**CONFIG, "optimizer": {"lr": 0}})
    v1 = configs.save_config(session, project.id, "c", CONFIG)
    v2 = configs.save_config(session, project.id, "c", {**CONFIG, "loop": {"epochs": 5}})
    configs.save_config(session, project.id, "other", CONFIG)
    assert (v1.version, v2.version) == (1, 2)
    latest = configs.list_configs(session, project.id)
    assert [(c.name, c.version) for c in latest] == [("c", 2), ("other", 1)]
    assert latest[0].body["loop"]["epochs"] == 5
    # The newest body saved again adds no version; an older one saved again does (restore).
    again, added = configs.store_config(session, project.id, "c", {**CONFIG, "loop": {"epochs": 5}})
    assert (again.id, again.version, added) == (v2.id, 2, False)
    restored, added = configs.store_config(session, project.id, "c", CONFIG)
    assert (restored.version, added) == (3, True)
    configs.create_group(session, project.id, "baselines")
    with pytest.raises(Conflict):
        configs.create_group(session, project.id, "baselines")


def test_unregister_dataset_keeps_folder_configs_and_runs(
    session: Session, project, make_dataset, tmp_path: Path
) -> None:
    from trainyard.platform import configs, datasets

    root = make_dataset(per_class=2)  # tmp_path/ds
    ds = datasets.register_dataset(session, project.id, "shapes", "ds", tmp_path)
    datasets.register_dataset(session, project.id, "same-folder", str(root), tmp_path)
    # Configs name the folder, relative to the datasets root or absolute; any version counts.
    configs.save_config(session, project.id, "relative", {**CONFIG, "data": {"root": "ds"}})
    configs.save_config(session, project.id, "absolute", {**CONFIG, "data": {"root": str(root)}})
    configs.save_config(session, project.id, "moved", {**CONFIG, "data": {"root": "ds/"}})
    configs.save_config(session, project.id, "moved", CONFIG)
    configs.save_config(session, project.id, "elsewhere", CONFIG)
    reads_it = runs.submit_run(session, project.id, {**CONFIG, "data": {"root": str(root)}})
    runs.submit_run(session, project.id, CONFIG)  # queued on another folder: no obstacle
    other = projects.create_project(session, "other")
    runs.submit_run(session, other.id, {**CONFIG, "data": {"root": str(root)}})  # not ours
    session.commit()

    usage = datasets.dataset_usage(session, ds, tmp_path)
    assert usage == datasets.DatasetUsage(["absolute", "moved", "relative"], 1, 0)
    with pytest.raises(Conflict, match="'shapes': 1 queued or running run"):
        datasets.delete_dataset(session, ds.id, tmp_path)
    assert [d.name for d in datasets.list_datasets(session, project.id)] == [
        "same-folder",
        "shapes",
    ]

    runs.request_cancel(session, reads_it.id)
    usage = datasets.delete_dataset(session, ds.id, tmp_path)
    session.commit()
    assert usage == datasets.DatasetUsage(["absolute", "moved", "relative"], 0, 1)
    assert [d.name for d in datasets.list_datasets(session, project.id)] == ["same-folder"]
    assert (root / "train" / "a" / "000.png").is_file()  # the folder is never touched
    assert len(configs.list_configs(session, project.id)) == 4
    assert runs.get_run(session, reads_it.id).config["data"]["root"] == str(root)
    with pytest.raises(NotFound, match=f"no dataset with id {ds.id}"):
        datasets.delete_dataset(session, ds.id, tmp_path)
    # The name is free again: registering the folder anew works.
    assert datasets.register_dataset(session, project.id, "shapes", "ds", tmp_path).id


def test_config_versions_newest_first_with_diff(session: Session, project) -> None:
    from trainyard.platform import configs

    for epochs in (1, 2, 3):
        configs.save_config(session, project.id, "c", {**CONFIG, "loop": {"epochs": epochs}})
    configs.save_config(session, project.id, "other", CONFIG)
    session.commit()
    rows = configs.list_config_versions(session, project.id, " c ")
    assert [(r.name, r.version, r.body["loop"]["epochs"]) for r in rows] == [
        ("c", 3, 3),
        ("c", 2, 2),
        ("c", 1, 1),
    ]
    assert configs.get_config_version(session, project.id, "c", 2).id == rows[1].id
    with pytest.raises(NotFound, match=r"no config named 'nope' \(configs: c, other\)"):
        configs.list_config_versions(session, project.id, "nope")
    with pytest.raises(NotFound, match="'c' has no version 7 \\(1 to 3\\)"):
        configs.get_config_version(session, project.id, "c", 7)
    with pytest.raises(NotFound, match="no project with id 999"):
        configs.list_config_versions(session, 999, "c")

    assert configs.config_diff(rows[0].body, rows[0].body) == []
    assert configs.config_diff(rows[2].body, rows[0].body) == [("loop.epochs", 1, 3)]
    old = {"a": {"x": 1, "gone": 2}, "params": {}}
    new = {"a": {"x": 1}, "params": {"hflip": 0.0}, "b": [1]}
    assert configs.config_diff(old, new) == [
        ("a.gone", 2, configs.MISSING),
        ("params.hflip", configs.MISSING, 0.0),
        ("b", configs.MISSING, [1]),
    ]
