"""The HTML report, opened in a real headless browser."""

import contextlib
import shutil

import pytest

import vaekit
from vaekit.cli import main

from conftest import small_config


def find_browser():
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not (chrome and driver):
        pytest.skip("no headless browser found (install Debian's chromium and chromium-driver; .ci/run does)")
    try:
        from selenium import webdriver  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    return chrome, driver


@pytest.fixture(scope="module")
def report(tmp_path_factory, digits):
    run = tmp_path_factory.mktemp("report") / "run"
    vaekit.train(small_config(epochs=4), run, data=digits, progress=False)
    assert main(["anomaly", str(run), "--anomaly-classes", "3"]) == 0
    assert main(["report", str(run)]) == 0
    return run / "report.html"


def test_report_is_self_contained(report):
    page = report.read_text()
    for heading in ("Test figures", "Training", "Samples", "Reconstructions", "Latent space",
                    "Anomaly detection", "Config"):
        assert f"<h2>{heading}" in page
    assert page.count("<img ") >= 9 and "src=\"data:image/png;base64," in page
    assert "auroc" in page


@contextlib.contextmanager
def browser():
    """A headless Chromium with the page's console log kept."""
    chrome, driver_path = find_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    b = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield b
    finally:
        b.quit()


def test_report_renders_in_a_browser(report):
    with browser() as b:
        b.get(report.as_uri())
        widths = b.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        errors = [e for e in b.get_log("browser") if e["level"] == "SEVERE"]
    assert len(widths) >= 9
    assert all(w > 0 for w in widths), widths
    assert errors == []
