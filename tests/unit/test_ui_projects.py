"""Projects through the app's API: create, rename, and deleting one with an active run is
refused with a clear message while the app keeps serving and nothing changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from tests.ui_server import serve_app
from trainyard.platform import runs
from trainyard.platform.service import Platform
from trainyard.platform.status import RunStatus


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Client]]:
    with serve_app(tmp_path_factory.mktemp("ui-projects")) as served:
        yield served.platform, served.client


def test_delete_with_an_active_run_is_refused(app: tuple[Platform, Client], tmp_path: Path) -> None:
    platform, c = app
    pid = c.predict("busy", "", api_name="/create_project")[0]["value"]
    run = platform.submit(pid, {"data": {"root": str(tmp_path)}})
    with platform.session() as s:
        r = runs.get_run(s, run.id)  # type: ignore[arg-type]
        runs.set_status(s, r, RunStatus.STARTING)
        runs.set_status(s, r, RunStatus.RUNNING)
    with pytest.raises(Exception, match="has 1 active run"):
        c.predict(pid, "busy", api_name="/delete_project")
    with pytest.raises(Exception, match="type the project's name"):
        c.predict(pid, "wrong name", api_name="/delete_project")
    with platform.session() as s:
        assert runs.get_run(s, run.id).status == RunStatus.RUNNING  # type: ignore[arg-type]
    # The server keeps serving: the next action works.
    renamed = c.predict(pid, "still busy", api_name="/rename_project")
    assert "still busy" in renamed[2]
    with platform.session() as s:
        r = runs.get_run(s, run.id)  # type: ignore[arg-type]
        runs.set_status(s, r, RunStatus.CANCELLED)
    deleted = c.predict(pid, "still busy", api_name="/delete_project")
    assert "Deleted project" in deleted[2]


def test_project_names_are_checked(app: tuple[Platform, Client]) -> None:
    _, c = app
    c.predict("twice", "", api_name="/create_project")
    with pytest.raises(Exception, match="already exists"):
        c.predict("twice", "", api_name="/create_project")
    with pytest.raises(Exception, match="must not be empty"):
        c.predict("   ", "", api_name="/create_project")
