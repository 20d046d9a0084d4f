"""Placeholder: being written."""

from __future__ import annotations

from typing import Any

import gradio as gr

from trainyard.ui.common import UIContext


def create_tensorboard_tab(ctx: UIContext, project: gr.Dropdown) -> dict[str, Any]:
    gr.Markdown("Coming soon.")
    return {}


def tensorboard_asgi(logdir: str) -> Any:
    from starlette.responses import PlainTextResponse

    return PlainTextResponse("TensorBoard is coming soon.")
