"""Saved models (Models tab), saved augmentation presets (Augmentations tab) and their use in
the Configs form, driven through the public API of a real server.

One app per module (starting Gradio costs seconds): a platform without Ray on a temp SQLite
database, seeded with the digits demo, served on a free port, scripted with `gradio_client`.
The form's reactions (a picked saved preset filling the Configs form) are private events with
no endpoint: the test runs them through the app's own event pipeline (`process_api`:
preprocessing, the handler, postprocessing), as a browser's event would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.ui_server import serve_app
from trainyard.platform import aug_presets, configs, model_entries, projects
from trainyard.platform.demo import seed_demo
from trainyard.platform.service import Platform
from trainyard.trainer.augment import PRESETS
from trainyard.ui.augment_tab import PARAMS
from trainyard.ui.common import UIContext
from trainyard.ui.saved_choices import augmentation_choices, model_choices

pytestmark = pytest.mark.slow  # a real server, ~10 s to start


@dataclasses.dataclass
class App:
    client: Client
    platform: Platform
    demo: gr.Blocks
    project_id: int

    def run_event(self, handler: str, **by_label: Any) -> list[Any]:
        """Run the private event whose handler is `handler` with the inputs' default values,
        except those named by their label (`project` is the project picker)."""
        from gradio.state_holder import SessionState

        found = [f for f in self.demo.fns.values() if f.name == handler]
        assert len(found) == 1, f"{handler}: registered {len(found)} times"
        values = {"Project": self.project_id, **by_label}
        inputs = [values.get(getattr(c, "label", None) or "", c.value) for c in found[0].inputs]
        try:
            out = asyncio.run(self.demo.process_api(found[0], inputs, SessionState(self.demo)))
        except gr.Error as e:
            raise AppError(e.message) from None
        return list(out["data"])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    with serve_app(tmp_path_factory.mktemp("ui-saved-entries"), prepare=seed_demo) as served:
        with served.platform.session() as s:
            pid = projects.list_projects(s)[0].id
        assert pid is not None
        yield App(served.client, served.platform, served.demo, pid)


def _rows(frame: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(frame["headers"], row, strict=True)) for row in frame["data"]]


def _entries(app: App) -> list[tuple[str, str]]:
    with app.platform.session() as s:
        return [(e.name, e.ref) for e in model_entries.list_model_entries(s, app.project_id)]


def _presets(app: App) -> list[tuple[str, str, dict[str, Any]]]:
    with app.platform.session() as s:
        return [(p.name, p.base, p.params) for p in aug_presets.list_aug_presets(s, app.project_id)]


def test_model_entries_save_list_delete(app: App) -> None:
    table, pick, status, name_box = app.client.predict(
        app.project_id, "small", "resnet-small", api_name="/save_model_entry"
    )
    assert status.startswith("Saved **small**: `resnet-small` (preset, 1.23M parameters, 32×32")
    assert name_box == "" and pick["value"] == "small"
    assert _rows(table) == [
        {
            "name": "small",
            "kind": "preset",
            "ref": "resnet-small",
            "parameters": "1.23M",
            "input size": "32×32",
        }
    ]

    # Refused, one line naming the problem, and nothing saved.
    refusals = [
        (app.project_id, "small", "vit-tiny", "already has a saved model named 'small'"),
        (app.project_id, "  ", "vit-tiny", "saved model name: must not be empty"),
        (app.project_id, "typo", "resnet-smal", "Did you mean 'resnet-small'"),
        (app.project_id, "hub", "org/not-downloaded", "'org/not-downloaded' not saved: cannot"),
        (None, "x", "vit-tiny", "choose a project first"),
    ]
    for project, name, model, message in refusals:
        with pytest.raises(AppError, match=message):
            app.client.predict(project, name, model, api_name="/save_model_entry")
    assert _entries(app) == [("small", "resnet-small")]

    table, pick = app.client.predict(app.project_id, api_name="/list_model_entries")
    assert [r["name"] for r in _rows(table)] == ["small"]
    assert [c[1] for c in pick["choices"]] == ["small"]

    with pytest.raises(AppError, match=r"no saved model named 'smal' \(saved: small\)"):
        app.client.predict(app.project_id, "smal", api_name="/delete_model_entry")
    with pytest.raises(AppError, match="choose a saved model first"):
        app.client.predict(app.project_id, None, api_name="/delete_model_entry")
    table, _, status = app.client.predict(app.project_id, "small", api_name="/delete_model_entry")
    assert "Deleted **small**" in status and table["data"] == []
    assert _entries(app) == []


def test_augmentation_presets_save_list_delete(app: App) -> None:
    table, pick, status, _ = app.client.predict(
        app.project_id, "tilt", "light", "{rotation: 20, vflip: 0.5}",
        api_name="/save_augmentation_preset",
    )  # fmt: skip
    assert status.startswith("Saved **tilt**: light + {rotation: 20.0, vflip: 0.5}")
    assert _rows(table) == [
        {"name": "tilt", "base": "light", "overrides": "{rotation: 20.0, vflip: 0.5}"}
    ]
    assert pick["value"] == "tilt"

    refusals = [
        ("tilt", "light", "{}", "already has a saved augmentation preset named 'tilt'"),
        ("", "light", "{}", "augmentation preset name: must not be empty"),
        # The preset dropdown's own check: its choices are fixed.
        ("x", "extreme", "{}", "extreme is not in the list of choices: .'none', 'light'"),
        ("x", "light", "{rotation: 500}", r"params\.rotation: Input should be less than"),
        ("x", "light", "{rotaton: 5}", r"params\.rotaton: unknown parameter"),
        ("x", "light", "[1, 2]", "expected a mapping"),
        ("light", "strong", "{}", "'light' is a built-in preset"),
    ]
    for name, base, overrides, message in refusals:
        with pytest.raises(AppError, match=message):
            app.client.predict(
                app.project_id, name, base, overrides, api_name="/save_augmentation_preset"
            )
    assert _presets(app) == [("tilt", "light", {"rotation": 20.0, "vflip": 0.5})]

    # Loading it back moves the preset, the sliders and the overrides together.
    loaded = app.run_event("do_load_preset", **{"Saved preset": "tilt"})
    assert loaded[0] == "light" and loaded[-2] == "{rotation: 20.0, vflip: 0.5}"
    sliders = dict(zip(PARAMS, loaded[1:-2], strict=True))
    assert sliders == {**PRESETS.get("light").model_dump(), "rotation": 20.0, "vflip": 0.5}
    assert "Loaded **tilt**" in loaded[-1]

    table, _ = app.client.predict(app.project_id, api_name="/list_augmentation_presets")
    assert [r["name"] for r in _rows(table)] == ["tilt"]
    table, pick, status = app.client.predict(
        app.project_id, "tilt", api_name="/delete_augmentation_preset"
    )
    assert "Deleted **tilt**" in status and table["data"] == [] and pick["choices"] == []
    with pytest.raises(AppError, match="none saved yet"):
        app.client.predict(app.project_id, "tilt", api_name="/delete_augmentation_preset")


def test_configs_offer_saved_items_and_stay_standalone(app: App) -> None:
    app.client.predict(app.project_id, "cifar-net", "resnet-small", api_name="/save_model_entry")
    app.client.predict(
        app.project_id, "spin", "strong", "{rotation: 45}", api_name="/save_augmentation_preset"
    )
    ctx = UIContext(app.platform)
    assert ("cifar-net (saved preset: resnet-small)", "resnet-small") in model_choices(
        ctx, app.project_id
    )
    spin = ("spin (saved: strong + {rotation: 45.0})", "saved: spin")
    assert spin in augmentation_choices(ctx, app.project_id)
    assert augmentation_choices(ctx, None) == [
        (n, n) for n in ("none", "light", "standard", "strong")
    ]
    # Both dropdowns take values filled at run time.
    dropdowns = {
        b.label: b for b in app.demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label
    }
    assert dropdowns["model"].allow_custom_value
    assert dropdowns["augmentation preset"].allow_custom_value

    # Picking the saved preset writes its base and its overrides into the form, then checks.
    def pick(value: str) -> list[Any]:
        form = {"dataset": "digits", "augmentation preset": value}
        return app.run_event("do_pick_augmentation", **form)

    preset, params, status = pick("saved: spin")
    assert (preset, params) == ("strong", "{rotation: 45.0}")
    assert status.startswith("Applied saved preset **spin**: strong + {rotation: 45.0}.")
    assert "**Valid.**" in status
    # A built-in preset is left as picked and checked as before.
    unchanged = {"__type__": "update"}
    assert pick("light") == [unchanged, unchanged, "**Valid.**"]
    with pytest.raises(AppError, match="no saved augmentation preset named 'gone'"):
        pick("saved: gone")

    # What the form then saves is a standalone config: no reference to the saved items.
    _, stored, _, _ = app.client.predict(
        project_id=app.project_id,
        config_name="from-saved",
        data_root="digits",
        model_name="resnet-small",
        augmentation_preset=preset,
        augmentation_params=params,
        api_name="/save_config",
    )
    with app.platform.session() as s:
        body = configs.get_config(s, stored["value"]).body
        # Deleting the saved items later changes nothing in the config.
        model_entries.delete_model_entry(s, app.project_id, "cifar-net")
        aug_presets.delete_aug_preset(s, app.project_id, "spin")
    assert body["model"]["name"] == "resnet-small"
    assert body["augmentation"] == {"preset": "strong", "params": {"rotation": 45.0}}
    with app.platform.session() as s:
        assert configs.validate(configs.get_config(s, stored["value"]).body)
