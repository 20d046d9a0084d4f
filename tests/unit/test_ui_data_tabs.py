"""The Datasets, Models, Augmentations and Configs tabs, driven through their public API.

One app per module (starting Gradio costs seconds): a platform without Ray on a temp SQLite
database, seeded with the digits demo, served on a free port, scripted with `gradio_client`
exactly as a user's script would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.conftest import write_image
from tests.ui_server import serve_app
from trainyard.platform import configs, datasets, projects
from trainyard.platform.demo import DEMO_CONFIG_NAME, demo_config, seed_demo
from trainyard.platform.service import Platform
from trainyard.trainer.config import ConfigError, TrainConfig
from trainyard.ui.configs_tab import FORM_KEYS, OPTIONAL_NUMBERS, form_body, form_values


@dataclasses.dataclass
class App:
    client: Client
    platform: Platform
    project_id: int
    datasets_dir: Path


@pytest.fixture(scope="module")  # tests using it are slow: a real server, ~10 s to start
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    with serve_app(tmp_path_factory.mktemp("ui-data-tabs"), prepare=seed_demo) as served:
        with served.platform.session() as s:
            pid = projects.list_projects(s)[0].id
        assert pid is not None
        yield App(served.client, served.platform, pid, served.settings.datasets_dir)


def _rows(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """A Dataframe's (headers) or a plot's (columns) payload as a list of row dicts."""
    names = frame.get("headers") or frame["columns"]
    return [dict(zip(names, row, strict=True)) for row in frame["data"]]


def _dataset_names(app: App) -> list[str]:
    with app.platform.session() as s:
        return [d.name for d in datasets.list_datasets(s, app.project_id)]


@pytest.mark.slow
def test_register_dataset_report_and_refusal(app: App, tmp_path: Path) -> None:
    root = app.datasets_dir / "shapes"
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for k, cls in enumerate(("circle", "square")):
            for i in range(n):
                write_image(root / split / cls / f"{i}.png", rng, k)
    (root / "train" / "circle" / "broken.png").write_bytes(b"not a png")
    (root / "train" / "square" / "notes.txt").write_text("ignored")

    dropdown, table, _, status, _ = app.client.predict(
        app.project_id, "shapes", "", api_name="/register_dataset"
    )
    assert "Registered **shapes**" in status
    shapes = next(r for r in _rows(table) if r["name"] == "shapes")
    assert (shapes["classes"], shapes["train"], shapes["val"], shapes["unreadable"]) == (2, 7, 4, 1)

    summary, chart, counts, problems, gallery = app.client.predict(
        app.project_id, "shapes", 8, api_name="/dataset_report"
    )
    assert "**2 classes**: circle, square" in summary
    assert {"class": "circle", "split": "train", "images": 4} in _rows(chart)
    assert {r["class"]: r["val"] for r in _rows(counts)} == {"circle": 2, "square": 2}
    found = {(r["kind"], r["path"]) for r in _rows(problems)}
    assert ("unreadable", "train/circle/broken.png") in found
    assert ("ignored", "train/square/notes.txt") in found
    # Every train sample, captioned with its class; the broken file cannot be shown.
    assert sorted(g["caption"] for g in gallery) == ["circle"] * 3 + ["square"] * 3
    assert all(Path(g["image"]).is_file() for g in gallery)

    # A folder outside the datasets root is refused with the platform's message; nothing stored.
    outside = tmp_path / "elsewhere"
    (outside / "train" / "a").mkdir(parents=True)
    before = _dataset_names(app)
    with pytest.raises(AppError, match="outside the datasets root"):
        app.client.predict(app.project_id, str(outside), "evil", api_name="/register_dataset")
    assert _dataset_names(app) == before

    # No project chosen: a hint, not a crash.
    summary, *_ = app.client.predict(None, None, 4, api_name="/dataset_report")
    assert "No dataset selected" in summary


@pytest.mark.slow
def test_preview_augmentation_on_dataset_samples(app: App) -> None:
    gallery, resolved = app.client.predict(
        app.project_id,
        "digits",
        "strong",
        "{rotation: 30}",
        32,
        2,
        3,
        0,
        api_name="/preview_augmentation",
    )
    items = gallery["value"]
    assert len(items) == 2 * (1 + 3)
    assert items[0]["caption"].endswith("· orig")
    assert items[1]["caption"].endswith("· #1")
    assert gallery["columns"] == 4
    from PIL import Image

    with Image.open(items[0]["image"]) as im:
        assert im.size == (128, 128)  # 32 px upscaled 4x for display
    body = yaml.safe_load(resolved)
    assert body["augmentation"] == {"preset": "strong", "params": {"rotation": 30}}
    assert body["resolved"]["rotation"] == 30 and body["resolved"]["erasing"] == 0.25

    with pytest.raises(AppError, match=r"augmentation\.params\.rotaton: unknown parameter"):
        app.client.predict(
            app.project_id, "digits", "light", "{rotaton: 3}", api_name="/preview_augmentation"
        )
    with pytest.raises(AppError, match="choose a project first"):
        app.client.predict(None, "digits", api_name="/preview_augmentation")


@pytest.mark.slow
def test_models_presets_and_check(app: App) -> None:
    table = app.client.predict(api_name="/list_models")
    rows = {r["model"]: r for r in _rows(table)}
    assert rows["resnet-tiny"]["parameters"] == "309.7k"
    assert rows["resnet-18"]["input size"] == "224×224"

    report = app.client.predict("vit-tiny", 48, api_name="/check_model")
    assert "ViTForImageClassification" in report and "48×48" in report
    # Offline (the test suite sets HF_HUB_OFFLINE=1) a hub id fails at once, saying why.
    report = app.client.predict("org/not-downloaded", api_name="/check_model")
    assert report.startswith("**Cannot load:** model.name: cannot load 'org/not-downloaded'")
    assert "HF_HUB_OFFLINE=1" in report
    with pytest.raises(AppError, match="give a preset name"):
        app.client.predict("  ", api_name="/check_model")


@pytest.mark.slow
def test_config_form_validates_then_saves(app: App) -> None:
    status, _ = app.client.predict(data_root="digits", optimizer_lr=-1, api_name="/validate_config")
    assert (
        status.startswith("**Invalid:**")
        and "optimizer.lr: Input should be greater than 0" in status
    )

    with pytest.raises(AppError, match=r"optimizer\.lr"):
        app.client.predict(
            project_id=app.project_id,
            config_name="sweep",
            data_root="digits",
            optimizer_lr=-1,
            api_name="/save_config",
        )
    with app.platform.session() as s:
        assert "sweep" not in [c.name for c in configs.list_configs(s, app.project_id)]

    status, text = app.client.predict(
        data_root="digits", optimizer_lr=0.01, loop_epochs=3, api_name="/validate_config"
    )
    assert status.startswith("**Valid.**")
    assert yaml.safe_load(text)["optimizer"]["lr"] == 0.01

    for version in (1, 2):
        status, _, table, _ = app.client.predict(
            project_id=app.project_id,
            config_name="sweep",
            data_root="digits",
            optimizer_lr=0.01 * version,
            data_image_size=32,
            augmentation_params="{hflip: 0.0}",
            api_name="/save_config",
        )
        assert f"version {version}" in status
    sweep = next(r for r in _rows(table) if r["name"] == "sweep")
    assert (sweep["version"], sweep["lr"], sweep["dataset"]) == (2, 0.02, "digits")

    # Loading puts the stored values back into the form (35 outputs: the form and the rest).
    out = app.client.predict(app.project_id, "sweep", api_name="/load_config")
    assert out[1] == 32 and 0.02 in out and "{hflip: 0.0}" in out

    groups, status, _ = app.client.predict(
        app.project_id, "lr-sweep", "learning rates", api_name="/create_group"
    )
    assert [r["group"] for r in _rows(groups)] == ["lr-sweep"]


@pytest.mark.slow
def test_yaml_export_and_import(app: App) -> None:
    path, text = app.client.predict(app.project_id, DEMO_CONFIG_NAME, api_name="/export_config")
    assert Path(path).name == f"{DEMO_CONFIG_NAME}-v1.yaml"
    body = yaml.safe_load(Path(path).read_text())
    assert body == yaml.safe_load(text) and body["model"]["name"] == "resnet-tiny"

    body["loop"]["epochs"] = 2
    status, stored, _, _ = app.client.predict(
        app.project_id, "imported", yaml.safe_dump(body), api_name="/import_config"
    )
    assert "Imported as **imported** version 1" in status
    with app.platform.session() as s:
        row = configs.get_config(s, stored["value"])
        assert row.body["loop"]["epochs"] == 2

    body["loop"]["epochs"] = 0
    with pytest.raises(AppError, match=r"loop\.epochs"):
        app.client.predict(
            app.project_id, "imported", yaml.safe_dump(body), api_name="/import_config"
        )
    with pytest.raises(AppError, match="YAML: expected a mapping"):
        app.client.predict(app.project_id, "imported", "- a list", api_name="/import_config")
    with app.platform.session() as s:
        names = [(c.name, c.version) for c in configs.list_configs(s, app.project_id)]
    assert ("imported", 1) in names  # the refused imports stored nothing


def test_form_round_trips_the_demo_config(tmp_path: Path) -> None:
    """Every field the demo config sets is in the form: load then save changes nothing."""
    body = TrainConfig.from_dict(demo_config("digits")).to_dict()
    values = dict(zip(FORM_KEYS, form_values(body, [], tmp_path), strict=True))
    assert TrainConfig.from_dict(form_body({}, values)).to_dict() == body


@pytest.mark.parametrize("key", sorted(OPTIONAL_NUMBERS))
def test_zero_stands_for_none_only_where_zero_is_invalid(key: str) -> None:
    # The browser's number box cannot be empty, so the form sends 0 for None; that must
    # never hide a valid 0.
    section, _, name = key.partition("_")
    body = TrainConfig.from_dict(demo_config("digits")).to_dict()
    body[section][name] = 0
    with pytest.raises(ConfigError, match=f"{section}.{name}"):
        TrainConfig.from_dict(body)


@pytest.mark.slow
def test_unregister_dataset_asks_to_confirm_and_keeps_everything(app: App) -> None:
    root = app.datasets_dir / "leaves"
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for k, cls in enumerate(("oak", "elm")):
            write_image(root / split / cls / "0.png", rng, k)
    dropdown, *_ = app.client.predict(app.project_id, "leaves", "", api_name="/register_dataset")
    leaves_id = dropdown["value"]
    body = {**demo_config("leaves"), "loop": {"epochs": 1}}
    with app.platform.session() as s:
        configs.save_config(s, app.project_id, "on-leaves", body)
    run = app.platform.submit(app.project_id, body)  # queued: it will read the folder

    with pytest.raises(AppError, match="type the dataset's name, 'leaves', to confirm"):
        app.client.predict(app.project_id, leaves_id, "digits", api_name="/delete_dataset")
    with pytest.raises(AppError, match="'leaves': 1 queued or running run"):
        app.client.predict(app.project_id, leaves_id, "leaves", api_name="/delete_dataset")
    assert "leaves" in _dataset_names(app)

    app.platform.cancel(run.id or 0)
    dropdown, table, _, status, confirm = app.client.predict(
        app.project_id, leaves_id, " leaves ", api_name="/delete_dataset"
    )
    assert "leaves" not in _dataset_names(app)
    assert leaves_id not in [value for _, value in dropdown["choices"]]
    assert dropdown["value"] is not None  # the next dataset is shown
    assert "leaves" not in [r["name"] for r in _rows(table)]
    assert status.startswith("Unregistered **leaves**; its folder `leaves/` is still on disk.")
    assert "config(s) on-leaves; 1 finished run(s)" in status
    assert confirm == ""
    assert (root / "train" / "oak" / "0.png").is_file()
    with app.platform.session() as s:
        assert "on-leaves" in [c.name for c in configs.list_configs(s, app.project_id)]

    with pytest.raises(AppError, match=r"this project has no dataset 'leaves' \(datasets: "):
        app.client.predict(app.project_id, "leaves", "leaves", api_name="/delete_dataset")
    with pytest.raises(AppError, match="choose a project first"):
        app.client.predict(None, "digits", "digits", api_name="/delete_dataset")
    assert "digits" in _dataset_names(app)


@pytest.mark.slow
def test_browse_config_versions_and_restore_one(app: App) -> None:
    for version in (1, 2, 3):
        app.client.predict(
            project_id=app.project_id,
            config_name="versioned",
            data_root="digits",
            optimizer_lr=0.01 * version,
            loop_epochs=version,
            api_name="/save_config",
        )
    dropdown, table, text, info = app.client.predict(
        app.project_id, "versioned", api_name="/list_config_versions"
    )
    assert [label for label, _ in dropdown["choices"]] == ["v3 (newest)", "v2", "v1"]
    assert dropdown["value"] == 3
    assert [(r["version"], r["lr"]) for r in _rows(table)] == [(3, 0.03), (2, 0.02), (1, 0.01)]
    assert yaml.safe_load(text)["optimizer"]["lr"] == 0.03
    assert info.startswith("**versioned** v3, the newest, saved 20")

    text, info = app.client.predict(app.project_id, "versioned", 1, api_name="/get_config_version")
    assert yaml.safe_load(text)["loop"]["epochs"] == 1
    assert "Against v3, the newest, 2 field(s) differ:" in info
    assert "- `optimizer.lr`: `0.01` → `0.03`" in info and "- `loop.epochs`: `1` → `3`" in info

    # An older version chosen by its id (a script may hold one) shows that version.
    v1_id = _rows(table)[2]["id"]
    dropdown, *_ = app.client.predict(app.project_id, v1_id, api_name="/list_config_versions")
    assert dropdown["value"] == 1

    out = app.client.predict(app.project_id, "versioned", "v1", api_name="/load_config_version")
    name, _, status = out[-3:]
    assert name == "versioned" and 0.01 in out
    assert "Loaded **versioned** v1. The newest is v3: Save adds this one as v4." in status

    # Restoring: the old version's YAML saved again becomes the newest, history unchanged.
    status, *_ = app.client.predict(app.project_id, "versioned", text, api_name="/import_config")
    assert "version 4" in status
    _, table, text4, info = app.client.predict(
        app.project_id, "versioned", api_name="/list_config_versions"
    )
    assert [r["version"] for r in _rows(table)] == [4, 3, 2, 1]
    assert yaml.safe_load(text4) == yaml.safe_load(text)
    _, info = app.client.predict(app.project_id, "versioned", 1, api_name="/get_config_version")
    assert "The same fields as v4, the newest." in info

    with pytest.raises(AppError, match=r"'versioned' has no version 9 \(1 to 4\)"):
        app.client.predict(app.project_id, "versioned", 9, api_name="/get_config_version")
    with pytest.raises(AppError, match="version: a whole number such as 3"):
        app.client.predict(app.project_id, "versioned", "latest", api_name="/get_config_version")
    with pytest.raises(AppError, match="this project has no config 'nope'"):
        app.client.predict(app.project_id, "nope", api_name="/list_config_versions")
    # A cleared selection clears the view instead of raising.
    dropdown, table, text, info = app.client.predict(
        app.project_id, None, api_name="/list_config_versions"
    )
    assert dropdown["choices"] == [] and _rows(table) == [] and text == info == ""


@pytest.mark.slow
def test_version_diff_ignores_how_data_root_is_spelled(app: App) -> None:
    # The demo config names its folder absolutely; the form saves the registered dataset's
    # relative path. One folder either way: only the field the user changed differs.
    absolute = str((app.datasets_dir / "digits").resolve())
    for version, root in ((1, absolute), (2, "digits")):
        app.client.predict(
            project_id=app.project_id,
            config_name="rooted",
            data_root=root,
            loop_epochs=version,
            api_name="/save_config",
        )
    _, info = app.client.predict(app.project_id, "rooted", 1, api_name="/get_config_version")
    assert "1 field(s) differ" in info and "loop.epochs" in info
    assert "data.root" not in info


def test_usage_line_says_unregistering_waits_for_unfinished_runs() -> None:
    from trainyard.ui.datasets_tab import usage_line

    done = usage_line(datasets.DatasetUsage(configs=["a"], finished_runs=2))
    assert "keep working" in done and "refused" not in done
    busy = usage_line(datasets.DatasetUsage(unfinished_runs=1))
    assert "refused until the queued and running ones finish" in busy
