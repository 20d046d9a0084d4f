"""What every tab shares: the context object, choice lists, and turning errors into messages.

Handlers are thin: they call platform services and convert the platform's one-line errors
into `gr.Error`, which Gradio shows to the user (and returns to API clients) while the
server, the queue and every other run stay as they were.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import gradio as gr
import pandas as pd

from trainyard.platform import projects, runs
from trainyard.platform.errors import PlatformError
from trainyard.platform.service import Platform
from trainyard.platform.status import RunStatus
from trainyard.trainer.config import ConfigError

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class UIContext:
    """Shared by every session: the platform (database, Ray, control loop). Per-user state
    lives in components and gr.State, never here."""

    platform: Platform
    ray_dashboard_url: str | None = None


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Show the platform's and the trainer's errors to the user as they are; log the rest and
    show a short message instead of a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (PlatformError, ConfigError, ValueError) as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(
                f"internal error ({type(e).__name__}: {e}); see the server log",
                print_exception=False,
            ) from None

    return wrapper


def dynamic_dropdown(**kwargs: Any) -> gr.Dropdown:
    """A dropdown whose choices are filled at run time (projects, runs, configs). Gradio checks
    an input against the choices the component was built with, so without
    `allow_custom_value` every API call (and the first event of a page) would be refused with
    "Value: 1 is not in the list of choices: []". Handlers validate the ids themselves."""
    kwargs.setdefault("choices", [])
    return gr.Dropdown(allow_custom_value=True, **kwargs)


def project_choices(ctx: UIContext) -> list[tuple[str, int]]:
    with ctx.platform.session() as s:
        return [(p.name, p.id) for p in projects.list_projects(s)]  # type: ignore[misc]


def run_choices(ctx: UIContext, project_id: int | None, limit: int = 200) -> list[tuple[str, int]]:
    with ctx.platform.session() as s:
        return _run_labels(runs.list_runs(s, project_id, limit=limit))


def _run_labels(rows: Sequence[Any]) -> list[tuple[str, int]]:
    # No status in the label: a dropdown's labels are not refreshed while it is shown.
    return [(f"#{r.id} {r.name}", r.id) for r in rows]


def named_items_view(
    ctx: UIContext,
    project_id: Any,
    list_items: Callable[[Any, int], Sequence[Any]],
    to_row: Callable[[Any], dict[str, Any]],
    columns: list[str],
    selected: str | None = None,
) -> tuple[pd.DataFrame, Any]:
    """A project's named items (saved models, saved presets) as a table, and the choices of
    the dropdown that picks one by name (`selected` chosen when it is among them)."""
    rows: Sequence[Any] = []
    if project_id not in (None, ""):
        with ctx.platform.session() as s:
            rows = list_items(s, int(project_id))
    names = [r.name for r in rows]
    table = pd.DataFrame([to_row(r) for r in rows], columns=columns)
    return table, gr.update(choices=names, value=selected if selected in names else None)


def project_runs(ctx: UIContext, project_id: Any) -> tuple[list[tuple[str, int]], int | None]:
    """The project's run choices, and the one to show first: the newest that has started (a
    queued run has nothing to show yet), else the newest."""
    if project_id in (None, ""):
        return [], None
    with ctx.platform.session() as s:
        rows = runs.list_runs(s, int(project_id), limit=200)
    choices = _run_labels(rows)
    started = [r.id for r in rows[:50] if RunStatus(r.status) != RunStatus.QUEUED]
    first = started[0] if started else (choices[0][1] if choices else None)
    return choices, first


def require_project(project_id: Any) -> int:
    if project_id in (None, ""):
        raise gr.Error("choose a project first (top of the page), or create one in Projects")
    return int(project_id)


def require_run(run_id: Any) -> int:
    if run_id in (None, ""):
        raise gr.Error("choose a run first")
    return int(run_id)


def run_id_list(values: Any) -> list[int]:
    """Run ids from a multiselect (or one id, or nothing), as ints; a clear error otherwise."""
    if values in (None, ""):
        return []
    if not isinstance(values, list | tuple):
        values = [values]
    try:
        return [int(v) for v in values if v not in (None, "")]
    except (TypeError, ValueError):
        raise gr.Error(f"run ids must be whole numbers (got {values!r})") from None


def ago(seconds: float) -> str:
    s = int(max(0, seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"
