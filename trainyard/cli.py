"""The `trainyard` command."""

from __future__ import annotations

import argparse
import sys

from trainyard.settings import Settings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="trainyard")
    sub = p.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo-data", help="write the digits demo dataset into DATASETS_DIR")
    demo.add_argument("--datasets-dir", help="default: TRAINYARD_DATASETS_DIR or ./datasets")
    demo.add_argument("--force", action="store_true", help="rewrite it even if it exists")
    args = p.parse_args(argv)

    settings = Settings.from_env()
    if args.cmd == "demo-data":
        from trainyard.demo_data import make_digits

        path = make_digits(args.datasets_dir or settings.datasets_dir, force=args.force)
        print(f"digits demo dataset: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
