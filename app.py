"""python app.py: start (or join) Ray, open the database, serve the trainyard web app."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also serve a public Gradio link")
    p.add_argument(
        "--ray-address",
        help="dashboard URL of a Ray cluster to join (default: start an embedded local head)",
    )
    p.add_argument(
        "--num-gpus",
        type=int,
        help="GPUs the embedded head advertises "
        "(default: detected; pretend some to try scheduling)",
    )
    p.add_argument("--db-url", help="SQLAlchemy URL (default: SQLite under --storage)")
    p.add_argument("--datasets-dir", help="root that datasets must live under")
    p.add_argument("--storage", help="where runs, checkpoints and the SQLite file go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trainyard.log_config import setup_logging
    from trainyard.settings import Settings

    setup_logging()
    settings = Settings.from_env()
    overrides = {
        "host": args.host,
        "port": args.port,
        "ray_address": args.ray_address,
        "num_gpus": args.num_gpus,
        "db_url": args.db_url,
        "datasets_dir": Path(args.datasets_dir) if args.datasets_dir else None,
        "storage_dir": Path(args.storage) if args.storage else None,
    }
    settings = dataclasses.replace(
        settings, **{k: v for k, v in overrides.items() if v is not None and v != ""}
    )
    settings.apply_process_env()

    from trainyard.platform.demo import seed_demo
    from trainyard.platform.ray_cluster import RayClusterError
    from trainyard.platform.service import Platform
    from trainyard.ui.app import launch
    from trainyard.ui.common import UIContext

    try:
        platform = Platform.open(settings, with_ray=True, start_loop=True)
    except RayClusterError as e:  # no Ray: say what to do, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        seed_demo(platform)
        ctx = UIContext(platform, ray_dashboard_url=platform.dashboard_url)
        launch(ctx, host=settings.host, port=settings.port, share=args.share)
    except KeyboardInterrupt:
        pass
    finally:
        platform.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
