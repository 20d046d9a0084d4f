"""Placeholder: being written."""

from __future__ import annotations

from typing import Any

import gradio as gr

from trainyard.ui.common import UIContext


def create_cluster_tab(ctx: UIContext) -> dict[str, Any]:
    gr.Markdown("Coming soon.")
    return {}
