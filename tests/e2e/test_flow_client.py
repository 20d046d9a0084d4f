"""The whole loop through `gradio_client` and named endpoints alone: project, dataset,
config, run, live log, metrics, prediction. What a script does, no browser."""

from __future__ import annotations

import time
from typing import Any

import pytest
from gradio_client import Client, handle_file

from tests.e2e.conftest import AppServer
from tests.ray_fixtures import wait_for

pytestmark = pytest.mark.slow


def _value(update: Any) -> Any:
    return update["value"] if isinstance(update, dict) else update


def test_scripted_flow(app_server: AppServer) -> None:
    c = Client(app_server.url, verbose=False)
    project = _value(c.predict("scripted", "via gradio_client", api_name="/create_project")[0])
    out = c.predict(project, "digits", "digits", api_name="/register_dataset")
    assert "digits" in str(out)

    with pytest.raises(Exception, match="optimizer.lr"):
        c.predict(
            project_id=project,
            config_name="bad",
            data_root="digits",
            optimizer_lr=-1,
            api_name="/save_config",
        )
    saved = c.predict(
        project_id=project,
        config_name="tiny",
        data_root="digits",
        model_name="resnet-tiny",
        augmentation_preset="none",
        optimizer_lr=0.003,
        loop_epochs=2,
        loop_threads=1,
        loop_progress_interval_s=0.5,
        api_name="/save_config",
    )
    config_id = _value(saved[1])
    assert config_id

    submitted = c.predict(project, config_id, "scripted run", 0, 1, 0, api_name="/submit_run")
    run_id = _value(submitted[1])
    t0 = time.monotonic()

    def log_has(text: str) -> bool:
        return text in c.predict(run_id, 200, api_name="/get_log")

    wait_for(lambda: log_has("training resnet-tiny"), 240, "the trainer's first lines")

    def status() -> str:
        table = c.predict(project, [], 200, api_name="/list_runs")
        rows = {row[0]: row for row in table["data"]}
        return str(rows[run_id][2])

    final = wait_for(
        lambda: (st := status()) in ("SUCCEEDED", "FAILED", "CANCELLED") and st,
        400,
        "the run to end",
    )
    assert final == "SUCCEEDED", c.predict(run_id, 100, api_name="/get_log")
    print(f"scripted run finished in {time.monotonic() - t0:.0f}s")

    series = c.predict(run_id, api_name="/metric_series")
    rows = series["data"]
    val_epochs = sorted({r[0] for r in rows if r[1] == "val" and r[2] == "accuracy"})
    assert val_epochs == [1, 2]

    png = next((app_server.datasets_dir / "digits" / "test" / "7").glob("*.png"))
    label, _table = c.predict(run_id, "best", [handle_file(str(png))], 3, None, api_name="/predict")
    assert label["label"] == "7", label

    # Bad input through the API: a clear error, and the server keeps serving.
    txt = app_server.datasets_dir / "notes.png"
    txt.write_text("not an image")
    with pytest.raises(Exception, match="notes.png"):
        c.predict(run_id, "best", [handle_file(str(txt))], 3, None, api_name="/predict")
    with pytest.raises(Exception, match="outside the datasets root"):
        c.predict(project, "/etc", "etc", api_name="/register_dataset")
    assert c.predict(run_id, 5, api_name="/get_log")
