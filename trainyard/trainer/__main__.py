"""`python -m trainyard.trainer --config cfg.yaml --run-dir DIR [--resume] [--set k=v ...]`.

Exit codes: 0 done; 2 the config, the data or the model is unusable (one line on stderr says
what and where, before any training); 1 anything else (a traceback follows).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainyard.trainer.events import EventWriter

EXIT_BAD_INPUT = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainyard.trainer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        help="YAML or JSON TrainConfig (default with --resume: the run folder's config.yaml)",
    )
    p.add_argument("--run-dir", required=True, help="where checkpoints, logs and results go")
    p.add_argument(
        "--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last if it exists"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set optimizer.lr=0.01 (repeatable)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Quiet, offline-friendly defaults for a process whose stdout is a job log.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' "Loading weights" bar
    from trainyard.log_config import setup_logging

    setup_logging()
    from trainyard.trainer.config import ConfigError, TrainConfig
    from trainyard.trainer.engine import Trainer
    from trainyard.trainer.events import EventWriter

    out = EventWriter()
    config_path = args.config
    if config_path is None:
        saved = Path(args.run_dir) / "config.yaml"
        if not (args.resume and saved.exists()):
            return _fail(
                out,
                "--config is required (or --resume with a run folder that has config.yaml)",
                "config",
            )
        config_path = str(saved)
    try:
        cfg = TrainConfig.load(config_path, args.overrides)
        Trainer(cfg, args.run_dir, resume=args.resume, events=out).run()
    except ConfigError as e:
        return _fail(out, str(e), "data" if type(e).__name__ == "DataError" else "config")
    except KeyboardInterrupt:
        out.say("interrupted")
        return 130
    except Exception as e:
        out.emit("error", message=f"{type(e).__name__}: {e}", kind="internal")
        raise
    return 0


def _fail(out: EventWriter, message: str, kind: str) -> int:
    out.emit("error", message=message, kind=kind)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
