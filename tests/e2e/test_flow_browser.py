"""A newcomer's first session, in headless Chromium: create a project, register the digits,
make a config, run it, watch the log, see it succeed and chart, drop a PNG on the model.
Screenshots of every tab land in `$TRAINYARD_SCREENSHOTS` (default: the test's tmp dir)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import AppServer

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()


def pick(page, label: str, option: str) -> None:  # type: ignore[no-untyped-def]
    """Choose `option` in the Gradio dropdown labelled `label`."""
    box = page.get_by_label(label, exact=True)
    box.click()
    page.get_by_role("option", name=option, exact=False).first.click()


def test_first_session_in_a_browser(app_server: AppServer, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    shots = Path(os.environ.get("TRAINYARD_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    def tab(name: str) -> None:
        page.get_by_role("tab", name=name, exact=True).click()

    page.goto(app_server.url)
    expect(page.get_by_label("Project", exact=True)).to_have_value("demo", timeout=60_000)

    tab("Projects")
    page.get_by_label("New project name").fill("browser")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_text("Created project browser")).to_be_visible()
    expect(page.get_by_label("Project", exact=True)).to_have_value("browser")
    shot("01-projects")

    tab("Datasets")
    page.get_by_label("Folder", exact=True).fill("digits")
    page.get_by_role("button", name="Register dataset").click()
    expect(page.locator("body")).to_contain_text("10 classes", timeout=60_000)
    shot("02-datasets")

    tab("Models")
    shot("03-models")
    tab("Augmentations")
    shot("04-augmentations")

    tab("Configs")
    pick(page, "dataset", "digits")
    pick(page, "augmentation preset", "none")
    page.get_by_label("epochs", exact=True).fill("3")
    page.get_by_label("threads", exact=True).fill("1")
    page.get_by_label("lr", exact=True).fill("0.003")
    page.get_by_label("Config name").fill("tiny")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Saved tiny version 1")).to_be_visible()
    shot("05-configs")

    tab("Runs")
    pick(page, "Config", "tiny")
    page.get_by_label("Run name (optional)").fill("first run")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_text(re.compile(r"Queued run #\d+"))).to_be_visible()
    shot("06-runs-queued")

    tab("Logs")
    log = page.locator("#ty-log textarea")
    expect(log).to_have_value(re.compile(r"training resnet-tiny"), timeout=240_000)
    shot("07-logs-live")

    tab("Runs")
    table = page.locator("#ty-runs-table")
    expect(table).to_contain_text("SUCCEEDED", timeout=400_000)
    shot("08-runs-succeeded")

    tab("Metrics")
    chart = page.locator("#ty-chart-accuracy")
    expect(chart.locator("canvas, svg").first).to_be_visible(timeout=60_000)
    page.get_by_text("Metric values").click()
    values = page.locator("#ty-metric-values")
    expect(values).to_contain_text("accuracy", timeout=30_000)
    rows = re.findall(r"(\d+)\s+val\s+accuracy", values.inner_text())
    assert sorted(set(rows)) == ["1", "2", "3"], values.inner_text()  # a point per epoch
    shot("09-metrics")

    tab("Model testing")
    png = sorted((app_server.datasets_dir / "digits" / "test" / "0").glob("*.png"))[0]
    dropped = tmp_path / "zero.png"
    shutil.copy(png, dropped)
    page.locator("#ty-test-image input[type=file]").set_input_files(str(dropped))
    expect(page.locator(".output-class").first).to_have_text("0", timeout=60_000)
    shot("10-model-testing")

    tab("Cluster")
    expect(page.locator("#ty-cluster-summary")).to_contain_text("2 GPU", timeout=30_000)
    shot("11-cluster")
    tab("TensorBoard")
    shot("12-tensorboard")
