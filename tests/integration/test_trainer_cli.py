"""The trainer's contract, end to end through its CLI: a real model on real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, trainer_cmd
from trainyard.trainer.events import parse_event

pytestmark = pytest.mark.slow

DIGITS_SETTINGS = {
    "data": {"image_size": 32, "batch_size": 64, "workers": 2},
    "augmentation": {"preset": "light", "params": {"hflip": 0.0}},
    "optimizer": {"name": "adamw", "lr": 0.003},
    "schedule": {"name": "onecycle"},
}


def events(stdout: str, name: str | None = None) -> list[dict]:
    out = [e for e in map(parse_event, stdout.splitlines()) if e is not None]
    return [e for e in out if name is None or e["event"] == name]


@pytest.fixture(scope="module")
def trained_digits(digits_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real training run on the digits, shared by the tests that inspect its outputs."""
    tmp = tmp_path_factory.mktemp("digits-run")
    cfg = tmp / "cfg.yaml"
    import yaml

    body = {k: dict(v) for k, v in DIGITS_SETTINGS.items()}
    body["data"]["root"] = str(digits_root)
    body["loop"] = {"epochs": 5, "threads": 1, "progress_interval_s": 0.5}
    cfg.write_text(yaml.safe_dump(body))
    run_dir = tmp / "run"
    proc = subprocess.run(
        trainer_cmd("--config", str(cfg), "--run-dir", str(run_dir)),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir / "stdout.txt").write_text(proc.stdout)
    return run_dir


def test_digits_reach_95_percent_and_pipeline_agrees(
    trained_digits: Path, digits_root: Path
) -> None:
    results = json.loads((trained_digits / "results.json").read_text())
    test_acc = results["test"]["metrics"]["accuracy"]
    assert test_acc >= 0.95, results

    from transformers import pipeline

    clf = pipeline("image-classification", model=str(trained_digits / "checkpoints" / "best"))
    files = sorted(digits_root.glob("test/*/*.png"))
    preds = clf([str(f) for f in files], top_k=1)
    pipe_acc = sum(p[0]["label"] == f.parent.name for p, f in zip(preds, files, strict=True))
    pipe_acc /= len(files)
    assert pipe_acc >= 0.95
    assert abs(pipe_acc - test_acc) <= 1 / len(files) + 1e-9  # at most one image differs


def test_run_folder_has_config_versions_and_label_maps(trained_digits: Path) -> None:
    assert (trained_digits / "config.yaml").exists()
    info = json.loads((trained_digits / "run_info.json").read_text())
    assert info["torch"] and info["transformers"] and "git_revision" in info
    config = json.loads((trained_digits / "checkpoints" / "best" / "config.json").read_text())
    assert config["id2label"] == {str(i): str(i) for i in range(10)}
    assert config["label2id"] == {str(i): i for i in range(10)}
    assert (trained_digits / "checkpoints" / "last" / "training_state.pt").exists()


def test_tensorboard_has_every_epoch(trained_digits: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(trained_digits / "tensorboard"))
    acc.Reload()
    for tag in ("train/loss", "val/loss", "train/accuracy", "val/accuracy"):
        assert [s.step for s in acc.Scalars(tag)] == [1, 2, 3, 4, 5], tag


def test_stdout_events_follow_the_schema(trained_digits: Path) -> None:
    out = (trained_digits / "stdout.txt").read_text()
    evs = events(out)
    assert evs[0]["event"] == "start" and evs[-1]["event"] == "finished"
    assert [e["epoch"] for e in events(out, "metrics") if e["split"] == "val"] == [1, 2, 3, 4, 5]
    progress = events(out, "progress")
    assert progress and all({"images_per_s", "eta_s", "global_step"} <= e.keys() for e in progress)
    assert "epoch 5/5 done" in out


def test_sigkill_then_resume_continues_from_last_epoch(
    digits_root: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(
        digits_root, **{**DIGITS_SETTINGS, "loop": {"epochs": 6, "progress_interval_s": 0.2}}
    )
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        trainer_cmd("--config", str(cfg), "--run-dir", str(run_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    killed_after = None
    for line in proc.stdout:
        ev = parse_event(line)
        if ev and ev["event"] == "checkpoint" and ev["kind"] == "last" and ev["epoch"] >= 2:
            killed_after = ev["epoch"]
            os.kill(proc.pid, signal.SIGKILL)  # mid-way through the next epoch
            break
    proc.wait(timeout=60)
    assert killed_after is not None and proc.returncode == -signal.SIGKILL
    assert not (run_dir / "results.json").exists()

    resumed = subprocess.run(
        trainer_cmd("--run-dir", str(run_dir), "--resume"),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"after epoch {killed_after}" in resumed.stdout
    val_epochs = [e["epoch"] for e in events(resumed.stdout, "metrics") if e["split"] == "val"]
    assert val_epochs == list(range(killed_after + 1, 7))
    assert events(resumed.stdout, "resume")[0]["epoch"] == killed_after
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "succeeded" and results["test"]["metrics"]["accuracy"] > 0.9


BAD_INPUTS: dict[str, tuple[Callable[[Path], dict], str]] = {}


def bad_input(name: str, expected: str):
    def deco(fn: Callable[[Path], dict]) -> Callable[[Path], dict]:
        BAD_INPUTS[name] = (fn, expected)
        return fn

    return deco


@bad_input("missing-dataset", "dataset folder not found")
def _missing(root: Path) -> dict:
    return {"data": {"root": str(root / "nowhere")}}


@bad_input("no-val", "has no val/ folder")
def _no_val(root: Path) -> dict:
    (root / "val").rename(root / "valid")
    return {}


@bad_input("corrupt-png", "unreadable image")
def _corrupt(root: Path) -> dict:
    (root / "train" / "a" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    return {}


@bad_input("zero-byte-file", "empty file (0 bytes)")
def _empty(root: Path) -> dict:
    (root / "val" / "b" / "000.png").write_bytes(b"")
    return {}


@bad_input("classes-differ", "class folders differ between train/ and val/")
def _differ(root: Path) -> dict:
    (root / "val" / "c").rename(root / "val" / "cc")
    return {}


@bad_input("negative-lr", "optimizer.lr: Input should be greater than 0 (got -1)")
def _lr(root: Path) -> dict:
    return {"optimizer": {"lr": -1}}


@bad_input("unknown-optimizer", "optimizer.name: unknown optimizer 'adamz'")
def _opt(root: Path) -> dict:
    return {"optimizer": {"name": "adamz"}}


@bad_input("hub-model-offline", "cannot load 'google/vit-base-patch16-224'")
def _hub(root: Path) -> dict:
    return {"model": {"name": "google/vit-base-patch16-224"}}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_nonzero_with_one_line(
    case: str,
    make_dataset: Callable[..., Path],
    write_config: Callable[..., Path],
    run_trainer: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))  # nothing cached
    mutate, expected = BAD_INPUTS[case]
    root = make_dataset(per_class=3)
    cfg = write_config(root, **mutate(root))
    proc = run_trainer("--config", str(cfg), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]
    assert not events(proc.stdout, "start")  # failed before training
    assert events(proc.stdout, "error")[0]["message"] in lines[0]


def test_skip_bad_images_finishes_and_reports_them(
    make_dataset: Callable[..., Path],
    write_config: Callable[..., Path],
    run_trainer: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    root = make_dataset(per_class=4)
    bad = [root / "train" / "a" / "000.png", root / "val" / "b" / "001.png"]
    bad[0].write_bytes(b"")
    bad[1].write_bytes(b"GIF89a broken")
    cfg = write_config(root, data={"on_bad_image": "skip"})
    proc = run_trainer("--config", str(cfg), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped 1 unreadable images in train/" in proc.stdout
    skipped = json.loads((tmp_path / "run" / "results.json").read_text())["skipped_images"]
    assert skipped == {"train": [str(bad[0])], "val": [str(bad[1])]}
