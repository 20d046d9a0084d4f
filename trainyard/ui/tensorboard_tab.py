"""TensorBoard: served inside the app at /tensorboard/, and shown in a tab for chosen runs.

TensorBoard's frontend asks for everything by relative URL (`data/runs`, `index.js`), so its
WSGI app needs no `--path_prefix`: Starlette's Mount strips `/tensorboard` into SCRIPT_NAME
and TensorBoard sees the paths it would see at the root of its own port. `a2wsgi` runs the
WSGI app in a thread pool beside Gradio's event loop.

The tab's iframe and link use relative URLs too (`tensorboard/...`), so they keep working
when the app sits behind a reverse proxy under a path.
"""

from __future__ import annotations

import html
import inspect
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gradio as gr

from trainyard.platform import runs
from trainyard.ui.common import UIContext, dynamic_dropdown, run_choices, run_id_list, user_errors

log = logging.getLogger(__name__)

MOUNT_PATH = "tensorboard/"  # relative to the app's page: see the module docstring
# The in-process loader re-reads event files this often. Each reload walks the whole logdir
# (checkpoint folders included), so not every second on a server with thousands of runs.
RELOAD_INTERVAL_S = 10
DEFAULT_RUNS_SHOWN = 10  # the project's newest runs preselected in the tab
IFRAME_HEIGHT_PX = 820


def tensorboard_wsgi(logdir: str) -> Any:
    """TensorBoard's own WSGI app for every event file under `logdir`, loaded in this process.

    tensorboard 2.21 has no `standard_tensorboard_wsgi`; this is what `TensorBoard.launch()`
    builds, minus the server. `load_fast=false`: the Python loader in a daemon thread, not
    the Rust data server, which would be one more subprocess for the web app to look after.
    """
    from tensorboard import program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester

    tb = program.TensorBoard()
    tb.configure(
        logdir=str(logdir),
        load_fast="false",
        reload_interval=RELOAD_INTERVAL_S,
        reload_task="thread",
        window_title="trainyard TensorBoard",
    )
    ingester = data_ingester.LocalDataIngester(tb.flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(
        tb.flags,
        tb.plugin_loaders,
        ingester.data_provider,
        tb.assets_zip_provider,
        ingester.deprecated_multiplexer,
    )
    return _relative_fonts(app)


def _relative_fonts(app: Any) -> Any:
    """TensorBoard's index.html asks for its fonts at `url(/font-roboto/...)`, the one absolute
    URL in its frontend: under /tensorboard/ that is a 404 and a fallback font. Make it
    relative. index.html is the only page served uncompressed, so this is a byte replace."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") not in ("/", "/index.html"):
            return app(environ, start_response)
        seen: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"], seen["headers"] = status, headers
            return lambda _data: None

        result = app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        body = body.replace(b"url(/font-roboto/", b"url(font-roboto/")
        headers = [
            (k, v) for k, v in seen["headers"] if k.lower() not in ("content-length", "etag")
        ]
        start_response(seen["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return wrapped


def tensorboard_asgi(logdir: str) -> Any:
    """An ASGI app serving TensorBoard for every run under `logdir`, for mounting at
    /tensorboard (app.py). `/tensorboard` without the slash redirects to `/tensorboard/`:
    the frontend's relative URLs need it. When the app has a login, so does TensorBoard."""
    from a2wsgi import WSGIMiddleware
    from starlette.responses import PlainTextResponse, RedirectResponse

    Path(logdir).mkdir(parents=True, exist_ok=True)
    wsgi = WSGIMiddleware(tensorboard_wsgi(logdir))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if not await signed_in(scope):
                await PlainTextResponse(
                    "sign in to trainyard first (open the app's main page), then reload",
                    status_code=401,
                )(scope, receive, send)
                return
            root = scope.get("root_path", "")
            path = scope.get("path", "")
            if path.startswith(root):
                path = path[len(root) :]
            if path == "":
                query = scope.get("query_string", b"").decode("latin1")
                target = root + "/" + (f"?{query}" if query else "")
                await RedirectResponse(target, status_code=307)(scope, receive, send)
                return
        await wsgi(scope, receive, send)

    return app


async def signed_in(scope: Any) -> bool:
    """Whether the request may see TensorBoard: Gradio's `launch(auth=...)` guards Gradio's own
    routes only, not apps mounted beside them, so the same check is made here. This reads
    Gradio 6's login cookie (`access-token[-unsecure]-<cookie_id>` in `App.tokens`, as its
    `/user` route does); if that ever changes, it fails closed."""
    from starlette.requests import Request

    gradio_app = scope.get("app")  # the top-level app, set by Starlette for every request
    auth = getattr(gradio_app, "auth", None)
    dependency = getattr(gradio_app, "auth_dependency", None)
    if auth is None and dependency is None:
        return True
    request = Request(scope)
    if dependency is not None:
        user = dependency(request)
        if inspect.isawaitable(user):
            user = await user
        return user is not None
    cookie_id = getattr(gradio_app, "cookie_id", None)
    tokens = getattr(gradio_app, "tokens", None)
    if cookie_id is None or not isinstance(tokens, dict):
        return False
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
        f"access-token-unsecure-{cookie_id}"
    )
    return token is not None and tokens.get(token) is not None


def run_folder_names(ctx: UIContext, run_ids: list[int]) -> list[str]:
    """The TensorBoard run-name prefixes of these runs: their folder names under the logdir
    (`<storage>/runs/<id:06d>/tensorboard` shows up as run `000042/tensorboard`)."""
    names = []
    with ctx.platform.session() as s:
        for rid in run_ids:
            run = runs.get_run(s, rid)
            names.append(Path(run.run_dir).name if run.run_dir else f"{rid:06d}")
    return names


def tensorboard_url(folders: list[str]) -> str:
    """TensorBoard's page (relative URL) with its run filter (a regex on run names) set to
    these run folders; all runs when `folders` is empty."""
    if not folders:
        return MOUNT_PATH + "#timeseries"
    regex = "^(" + "|".join(re.escape(f) for f in folders) + ")/"
    return f"{MOUNT_PATH}?runFilter={quote(regex, safe='')}#timeseries"


def tensorboard_html(url: str, note: str = "") -> str:
    src = html.escape(url, quote=True)
    return (
        f'<div class="ty-tensorboard">'
        f'<p><a href="{src}" target="_blank" rel="noopener">Open TensorBoard in its own tab</a>'
        f"{' &middot; ' + html.escape(note) if note else ''}</p>"
        f'<iframe src="{src}" title="TensorBoard" '
        f'style="width:100%;height:{IFRAME_HEIGHT_PX}px;border:1px solid #ddd;border-radius:6px">'
        f"</iframe></div>"
    )


def create_tensorboard_tab(ctx: UIContext, project: gr.Dropdown) -> dict[str, Any]:
    gr.Markdown(
        "TensorBoard for this app's runs (scalars per epoch and per step). Pick the runs to "
        "show; none picked shows every run on the server."
    )
    with gr.Row():
        picked = dynamic_dropdown(
            label="Runs", elem_id="ty-tensorboard-runs", value=[], multiselect=True, scale=5
        )
        refresh = gr.Button("Refresh run list", scale=0, min_width=180)
    frame = gr.HTML(tensorboard_html(tensorboard_url([])))

    @user_errors
    def tensorboard_view(run_ids: Any) -> str:
        ids = run_id_list(run_ids)
        folders = run_folder_names(ctx, ids)
        note = f"showing {len(ids)} run(s)" if ids else "showing every run"
        return tensorboard_html(tensorboard_url(folders), note)

    def on_project(project_id: Any) -> Any:
        choices = run_choices(ctx, int(project_id)) if project_id not in (None, "") else []
        return gr.update(choices=choices, value=[v for _, v in choices[:DEFAULT_RUNS_SHOWN]])

    @user_errors
    def refresh_runs(project_id: Any, current: Any) -> Any:
        choices = run_choices(ctx, int(project_id)) if project_id not in (None, "") else []
        return gr.update(choices=choices, value=run_id_list(current))

    picked.change(tensorboard_view, [picked], [frame], api_name="tensorboard_view")
    refresh.click(refresh_runs, [project, picked], [picked], api_visibility="private")
    return {"runs": picked, "frame": frame, "on_project": [(on_project, [picked])]}
