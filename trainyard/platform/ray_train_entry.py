"""`python -m trainyard.platform.ray_train_entry --config X --run-dir Y --workers N
[--use-gpu] [--threads T] [--resume]`: one run on N devices through Ray Train.

This is the entrypoint of a Ray job for a run that asks for more than one device (a
one-device run is `python -m trainyard.trainer` directly: Ray Train spends ~50 s starting
workers on a small machine). It books nothing itself; `TorchTrainer` starts N worker actors,
each with one GPU (`--use-gpu`, NCCL) or `--threads` CPUs (gloo), and a process group
joining them.

Every worker reports its rank, world size and `CUDA_VISIBLE_DEVICES`, proves the process
group with an all-reduce, then runs the ordinary `Trainer`: it sees the process group and
trains data-parallel (DDP), rank 0 alone printing events and writing the run folder.

Exit codes follow `python -m trainyard.trainer`: 0 done; 2 the config or data is unusable
(one line on stderr); 1 anything else.

Ray is initialised here, and only here: this process is a Ray job's driver, started by Ray
with `RAY_ADDRESS` pointing at its own cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

# Set before Ray is imported (it reads them at import): worker lines reach the job log as
# they were printed, so `@trainyard` event lines still start the line, and lines that two
# workers print alike are not folded into "[repeated 2x across cluster]". Ray Train also
# reroutes `print` on workers through logging, which tees every printed line to stderr as
# well: each would appear twice in the job log. Ray Train passes that one on to workers.
DRIVER_ENV = {
    "RAY_DISABLE_WORKER_LOG_PREFIX": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_COLOR_PREFIX": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}
# What `python -m trainyard.trainer` sets for itself; workers do not inherit the driver's env.
WORKER_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TQDM_DISABLE": "1",
    "PYTHONUNBUFFERED": "1",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainyard.platform.ray_train_entry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="TrainConfig file (default with --resume: RUN_DIR/config.yaml)")
    p.add_argument("--run-dir", required=True, help="where checkpoints, logs and results go")
    p.add_argument("--workers", type=int, required=True, help="devices (Ray Train workers)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per worker, NCCL")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads per worker (and its CPUs)"
    )
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, as for python -m trainyard.trainer (repeatable)",
    )
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")
    if args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key, value in DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    from trainyard.trainer.config import ConfigError, TrainConfig

    config_path = args.config
    if config_path is None:
        saved = Path(args.run_dir) / "config.yaml"
        if not (args.resume and saved.exists()):
            return _bad_input(
                "--config is required (or --resume with a run folder that has config.yaml)"
            )
        config_path = str(saved)
    try:
        # Checked here, before any worker starts: a typo costs a second, not a minute.
        cfg = TrainConfig.load(config_path, [*args.overrides, f"loop.threads={args.threads}"])
        from trainyard.trainer.data import scan_dataset

        scan_dataset(cfg.data.root)  # a bad layout costs a second here, not a worker start
    except ConfigError as e:
        return _bad_input(str(e))

    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchConfig, TorchTrainer

    # Imported by name, not as __main__'s function: workers then import this module rather
    # than receiving a pickled copy of __main__.
    from trainyard.platform.ray_train_entry import train_loop_per_worker

    run_dir = Path(args.run_dir).resolve()
    ray.init()  # joins the job's cluster (RAY_ADDRESS); never called in the web process
    resources = {"CPU": float(args.threads)}
    if args.use_gpu:
        resources["GPU"] = 1.0
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": cfg.to_dict(),
            "run_dir": str(run_dir),
            "resume": args.resume,
            "threads": args.threads,
        },
        torch_config=TorchConfig(backend="nccl" if args.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=args.workers, use_gpu=args.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name="ray_train",
            # Ray Train's own state; under the run folder, which every node must mount.
            storage_path=str(run_dir),
            # Retrying is the platform's decision (it resumes from the last checkpoint).
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    print(f"ray_train_entry: starting {args.workers} workers", flush=True)
    try:
        trainer.fit()
    except TrainingFailedError as e:
        bad = _config_error_in(e)
        if bad is not None:
            return _bad_input(bad)
        print(f"error: training failed on a Ray Train worker: {e}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    print(f"ray_train_entry: all {args.workers} workers finished", flush=True)
    return 0


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: report, check the process group, train."""
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    import torch
    import torch.distributed as dist
    from ray import train
    from ray.train.torch import get_device

    torch.set_num_threads(int(config["threads"]))
    ctx = train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    print(
        f"ray_train_entry: worker rank {rank} of world size {world} "
        f"(local rank {ctx.get_local_rank()}, node rank {ctx.get_node_rank()}, "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}, "
        f"backend {dist.get_backend()})",
        flush=True,
    )
    # Every worker contributes 1: the sum proves all of them joined the same group.
    ones = torch.ones(1, device=get_device())
    dist.all_reduce(ones)
    if int(ones.item()) != world:
        raise RuntimeError(f"all_reduce summed to {ones.item()}, expected {world} workers")
    if rank == 0:
        print(f"ray_train_entry: process group of {world} workers is up", flush=True)
    # Every rank trains: the Trainer finds the process group and wraps the model in DDP.
    _run_trainer(config, is_main=rank == 0)


def _run_trainer(config: dict[str, Any], is_main: bool) -> None:
    from trainyard.log_config import setup_logging
    from trainyard.trainer.config import ConfigError, TrainConfig
    from trainyard.trainer.engine import Trainer
    from trainyard.trainer.events import EventWriter

    setup_logging()
    out = EventWriter(enabled=is_main)  # one run, one stream of events: rank 0's
    try:
        cfg = TrainConfig.from_dict(config["config"])
        Trainer(cfg, config["run_dir"], resume=bool(config["resume"]), events=out).run()
    except ConfigError as e:
        kind = "data" if type(e).__name__ == "DataError" else "config"
        out.emit("error", message=str(e), kind=kind)
        raise
    except Exception as e:
        out.emit("error", message=f"{type(e).__name__}: {e}", kind="internal")
        raise


def _config_error_in(e: BaseException) -> str | None:
    """The message of a ConfigError raised on a worker, if that is why training failed."""
    from trainyard.trainer.config import ConfigError

    seen: set[int] = set()
    stack: list[BaseException] = [e]
    while stack:
        err = stack.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ConfigError):
            return str(err)
        # Ray Train V2 keeps each worker's exception in `worker_failures` {rank: error}.
        failures = getattr(err, "worker_failures", None)
        if isinstance(failures, dict):
            stack.extend(f for f in failures.values() if isinstance(f, BaseException))
        stack.extend(x for x in (err.__cause__, err.__context__) if x is not None)
    return None


def _bad_input(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
