"""A real trainyard app for API tests: a platform without Ray on a temporary SQLite file,
served by Gradio on a free port, with a `gradio_client` connected to it. Starting one costs
seconds, so test modules share one per module."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio_client import Client

from trainyard.platform.ray_cluster import free_port
from trainyard.platform.service import Platform
from trainyard.settings import Settings


@dataclass
class Served:
    url: str
    client: Client
    platform: Platform
    demo: gr.Blocks
    settings: Settings


@contextlib.contextmanager
def serve_app(
    tmp: Path,
    datasets_dir: Path | None = None,
    prepare: Callable[[Platform], object] | None = None,
) -> Iterator[Served]:
    """Storage under `tmp`, datasets under `datasets_dir` (default: `tmp/datasets`);
    `prepare(platform)` fills the database before the server starts."""
    from trainyard.ui.app import launch
    from trainyard.ui.common import UIContext

    settings = dataclasses.replace(
        Settings(), storage_dir=tmp / "storage", datasets_dir=datasets_dir or tmp / "datasets"
    )
    platform = Platform.open(settings, with_ray=False)
    try:
        if prepare is not None:
            prepare(platform)
        port = free_port()
        demo = launch(UIContext(platform), port=port, block=False)
        try:
            url = f"http://127.0.0.1:{port}/"
            yield Served(url, Client(url, verbose=False), platform, demo, settings)
        finally:
            demo.close()
    finally:
        platform.close()
