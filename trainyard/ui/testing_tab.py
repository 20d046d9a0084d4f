"""Placeholder: being written."""

from __future__ import annotations

from typing import Any

import gradio as gr

from trainyard.ui.common import UIContext


def create_testing_tab(
    ctx: UIContext, project: gr.Dropdown, selected_run: gr.State
) -> dict[str, Any]:
    gr.Markdown("Coming soon.")
    return {}
