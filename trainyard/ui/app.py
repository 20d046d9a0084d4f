"""The Gradio app: `create_ui(ctx)` composes one module per tab; `serve(...)` launches it.

Nothing is built or started at import time. Every user action is a named API endpoint
(`api_name=`), so `gradio_client` can script everything the UI does. TensorBoard is mounted
into the same server at `/tensorboard/`.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from trainyard.ui import (
    augment_tab,
    cluster_tab,
    configs_tab,
    datasets_tab,
    logs_tab,
    metrics_tab,
    models_tab,
    projects_tab,
    runs_tab,
    tensorboard_tab,
    testing_tab,
)
from trainyard.ui.common import UIContext, dynamic_dropdown, project_choices

log = logging.getLogger(__name__)

TITLE = "trainyard"
CSS = """
.ty-log textarea { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
"""


def create_ui(ctx: UIContext) -> gr.Blocks:
    # Uploads and generated images pile up in Gradio's cache: drop files older than a day,
    # checking hourly.
    with gr.Blocks(title=TITLE, delete_cache=(3600, 86400)) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown(f"# {TITLE}", elem_id="ty-title")
            project = dynamic_dropdown(
                label="Project", choices=[], value=None, scale=2, elem_id="ty-project"
            )
        # The run chosen in Runs drives Logs, Metrics and Model testing.
        selected_run = gr.State(None)
        tabs: dict[str, dict[str, Any]] = {}
        with gr.Tabs():
            with gr.Tab("Projects", id="projects"):
                tabs["projects"] = projects_tab.create_projects_tab(ctx, project)
            with gr.Tab("Datasets", id="datasets"):
                tabs["datasets"] = datasets_tab.create_datasets_tab(ctx, project)
            with gr.Tab("Models", id="models"):
                tabs["models"] = models_tab.create_models_tab(ctx, project)
            with gr.Tab("Augmentations", id="augmentations"):
                tabs["augmentations"] = augment_tab.create_augment_tab(ctx, project)
            with gr.Tab("Configs", id="configs"):
                tabs["configs"] = configs_tab.create_configs_tab(ctx, project)
            with gr.Tab("Runs", id="runs"):
                tabs["runs"] = runs_tab.create_runs_tab(ctx, project, selected_run)
            with gr.Tab("Logs", id="logs") as logs_page:
                tabs["logs"] = logs_tab.create_logs_tab(ctx, project, selected_run)
            # A hidden box cannot be scrolled: the log opened before the tab was shown is
            # scrolled to its end when the tab is.
            logs_page.select(None, js=logs_tab.SCROLL_TO_END)
            with gr.Tab("Metrics", id="metrics"):
                tabs["metrics"] = metrics_tab.create_metrics_tab(ctx, project, selected_run)
            with gr.Tab("Model testing", id="testing"):
                tabs["testing"] = testing_tab.create_testing_tab(ctx, project, selected_run)
            with gr.Tab("Cluster", id="cluster"):
                tabs["cluster"] = cluster_tab.create_cluster_tab(ctx)
            with gr.Tab("TensorBoard", id="tensorboard"):
                tabs["tensorboard"] = tensorboard_tab.create_tensorboard_tab(ctx, project)

        def on_load() -> Any:
            choices = project_choices(ctx)
            return gr.update(choices=choices, value=choices[0][1] if choices else None)

        demo.load(on_load, None, [project], api_visibility="private")
        # Each tab that shows project data registered outputs to refresh on project change.
        for tab in tabs.values():
            for fn, outputs in tab.get("on_project", []):
                project.change(fn, [project], outputs, api_visibility="private")
    return demo


def mount_tensorboard(app: Any, logdir: str) -> None:
    """Serve TensorBoard for every run under `logdir` at /tensorboard/ inside the app."""
    from starlette.routing import Mount

    from trainyard.ui.tensorboard_tab import tensorboard_asgi

    # First in the route list: Gradio's own routes include catch-alls.
    app.router.routes.insert(0, Mount("/tensorboard", app=tensorboard_asgi(logdir)))


def launch(
    ctx: UIContext,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    auth: Any = None,
    block: bool = True,
) -> gr.Blocks:
    demo = create_ui(ctx)
    demo.queue(default_concurrency_limit=8)  # long handlers don't block other users
    _, local_url, share_url = demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        auth=auth,
        prevent_thread_lock=True,
        css=CSS,
        theme=gr.themes.Soft(),
        show_error=True,
        quiet=True,
    )
    mount_tensorboard(demo.app, str(ctx.platform.settings.storage_dir / "runs"))
    print(f"trainyard app:  {local_url}", flush=True)
    if share:
        print(
            f"public link:    {share_url}"
            if share_url
            else "public link:    not available (no internet, or Gradio's share service is "
            "unreachable); the app is still served locally",
            flush=True,
        )
    print(f"TensorBoard:    {local_url.rstrip('/')}/tensorboard/", flush=True)
    if ctx.ray_dashboard_url:
        print(f"Ray dashboard:  {ctx.ray_dashboard_url}", flush=True)
    if block:
        demo.block_thread()
    return demo
