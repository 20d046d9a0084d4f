"""Going through the queue and Ray against starting the trainer directly.

    python bench/control_plane_ray.py [--repeat 3] [--epochs 2]

Both sides train the same config (resnet-tiny on the digits, one thread) from the same
machine. Direct: `python -m trainyard.trainer` in a subprocess; time to its first training
step (its first `progress` event, emitted after step 1) and to its exit. Platform: a run
submitted to the database queue, scheduled by the control loop as a Ray job on a warm local
Ray head; time from submit to the first training step (the event's own timestamp) and to the
run's SUCCEEDED in the database. Medians of --repeat runs each, after one warm-up of each.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from trainyard.demo_data import make_digits
from trainyard.platform import projects, runs
from trainyard.platform.control import ControlPlane
from trainyard.platform.db import make_engine, migrate
from trainyard.platform.models import RunLog
from trainyard.platform.ray_backend import RayJobBackend
from trainyard.platform.ray_cluster import LocalRayHead, apply_ray_env, free_port
from trainyard.trainer.events import parse_event

REPO = Path(__file__).resolve().parent.parent


def config(root: Path, epochs: int) -> dict[str, Any]:
    return {
        "data": {"root": str(root), "batch_size": 64, "workers": 1},
        "model": {"name": "resnet-tiny"},
        "augmentation": {"preset": "none"},
        "loop": {"epochs": epochs, "threads": 1, "progress_interval_s": 0.0},
    }


def direct(cfg_path: Path, run_dir: Path) -> tuple[float, float]:
    t0 = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainyard.trainer",
            "--config",
            str(cfg_path),
            "--run-dir",
            str(run_dir),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    first = None
    assert proc.stdout is not None
    for line in proc.stdout:
        ev = parse_event(line)
        if first is None and ev and ev["event"] == "progress":
            first = ev["time"] - t0
    proc.wait()
    assert proc.returncode == 0 and first is not None
    return first, time.time() - t0


def via_platform(
    plane: ControlPlane, engine: Any, pid: int, cfg: dict[str, Any]
) -> tuple[float, float]:
    with Session(engine, expire_on_commit=False) as s:
        t0 = time.time()
        run = runs.submit_run(s, pid, cfg)
        s.commit()
        rid = run.id
    while True:
        with Session(engine) as s:
            r = runs.get_run(s, rid)  # type: ignore[arg-type]
            if r.status.is_terminal():
                assert str(r.status) == "SUCCEEDED", r.failure_message
                done = time.time() - t0
                lines = s.exec(
                    select(RunLog.line).where(RunLog.run_id == rid).order_by(col(RunLog.seq))
                ).all()
                break
        time.sleep(0.05)
    first = next(ev["time"] for ev in map(parse_event, lines) if ev and ev["event"] == "progress")
    return first - t0, done


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ty-bench-"))
    root = make_digits(tmp / "datasets")
    cfg = config(root, args.epochs)
    import yaml

    cfg_path = tmp / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    apply_ray_env("disabled")
    head = LocalRayHead(dashboard_port=free_port(), reuse_existing=False, auth_mode="disabled")
    url = head.start(num_gpus=1, num_cpus=2, temp_dir=Path(tempfile.mkdtemp(prefix="ty-ray-")))
    engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
    migrate(engine)
    with Session(engine) as s:
        pid = projects.create_project(s, "bench").id
        s.commit()
    plane = ControlPlane(engine, RayJobBackend(url), tmp / "storage", threads_per_run=1)
    plane.start(period_s=0.2)
    try:
        direct(cfg_path, tmp / "warm-direct")
        via_platform(plane, engine, pid, cfg)  # type: ignore[arg-type]
        d = [direct(cfg_path, tmp / f"direct-{i}") for i in range(args.repeat)]
        v = [via_platform(plane, engine, pid, cfg) for _ in range(args.repeat)]  # type: ignore[arg-type]
    finally:
        plane.stop()
        head.stop()
    d_first, d_total = statistics.median(x[0] for x in d), statistics.median(x[1] for x in d)
    v_first, v_total = statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)
    print(
        f"submit -> first training step: platform {v_first:.2f} s, direct {d_first:.2f} s, "
        f"+{v_first - d_first:.2f} s  (target: at most +2 s)"
    )
    print(
        f"submit -> done: platform {v_total:.2f} s, direct {d_total:.2f} s, "
        f"{v_total / d_total:.2f}x  (target: at most 1.10x)"
    )
    print(
        f"(medians of {args.repeat}; {args.epochs} epochs of resnet-tiny on the digits, "
        "1 thread, warm local Ray head)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
