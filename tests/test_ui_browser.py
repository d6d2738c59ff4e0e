"""The browser app driven in a real (headless) Chromium: region, Discover, a slider, the GIF export,
a bad checkpoint, and no request leaving this machine.

Needs Playwright for Python and a Chromium on this machine (Debian: ``apt-get install chromium``;
``playwright install`` is not used).  Runs on a tiny random generator written by the test.
Environment:
    OTRESEFA_UI_CHECKPOINT: serve this checkpoint instead (e.g. ``synthfaces``), for screenshots.
    OTRESEFA_UI_SCREENSHOTS: a folder to save ``ui_discover.png`` and ``ui_heatmap.png`` into.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import make_tiny_generator

REQUIRED = os.environ.get("OTRESEFA_REQUIRE_BROWSER") == "1"  # CI sets it: a missing browser fails, never skips
CHROMIUM = next((path for path in ("/usr/bin/chromium", shutil.which("chromium")) if path and os.path.exists(path)), None)
if CHROMIUM is None:
    missing = "no Chromium browser found (/usr/bin/chromium or chromium on PATH; Debian: apt-get install chromium)"
    if REQUIRED:
        raise RuntimeError(missing)
    pytest.skip(missing, allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")

from PIL import Image  # noqa: E402

from otresefa.ui.app import build_app, serve  # noqa: E402

# Gradio's queue calls pandas options that pandas 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated)")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TIMEOUT_MS = 60_000
DISCOVER_TIMEOUT_MS = 600_000  # the Jacobian of a full-size model ($OTRESEFA_UI_CHECKPOINT) takes minutes on a CPU
SCREENSHOTS = os.environ.get("OTRESEFA_UI_SCREENSHOTS")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app serving a tiny generator (or ``$OTRESEFA_UI_CHECKPOINT``) on a free local port."""
    folder = tmp_path_factory.mktemp("ui")
    checkpoint = os.environ.get("OTRESEFA_UI_CHECKPOINT")
    if not checkpoint:
        checkpoint = str(make_tiny_generator(resolution=32).save(folder / "tiny.safetensors"))
    previous_cache = os.environ.get("OTRESEFA_CACHE")
    os.environ["OTRESEFA_CACHE"] = str(folder / "cache")  # Jacobians of this run only
    demo = build_app(checkpoint)
    try:
        yield serve(demo, port=free_port())
    finally:
        demo.close()
        if previous_cache is None:
            os.environ.pop("OTRESEFA_CACHE", None)
        else:
            os.environ["OTRESEFA_CACHE"] = previous_cache


@pytest.fixture
def page(app_url):
    """A browser page on the app; records the host of every request it makes."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(TIMEOUT_MS)
        page.requested_hosts = set()
        page.on("request", lambda request: page.requested_hosts.add(urlparse(request.url).hostname))
        page.goto(app_url)
        page.locator("#sample-image img").wait_for()
        yield page
        browser.close()


def choose(page, element_id: str, option: str) -> None:
    """Pick ``option`` in the Gradio dropdown ``#element_id``."""
    page.locator(f"#{element_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def image_source(page, element_id: str) -> str:
    return page.locator(f"#{element_id} img").first.get_attribute("src")


def wait_for_new_image(page, element_id: str, old_source: str) -> str:
    page.wait_for_function(
        "([id, old]) => { const img = document.querySelector(`#${id} img`); return img && img.src !== old && img.complete; }",
        arg=[element_id, old_source],
    )
    return image_source(page, element_id)


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


def click_at(page, element_id: str, fraction_x: float, fraction_y: float) -> None:
    """Click the image of ``#element_id`` at a point given as fractions of its width and height."""
    box = page.locator(f"#{element_id} img").bounding_box()
    page.mouse.click(box["x"] + fraction_x * box["width"], box["y"] + fraction_y * box["height"])


def test_discover_edit_export_offline(page):
    click_at(page, "sample-image", 0.3, 0.3)
    page.get_by_text("click 1 more corner(s)").first.wait_for()
    click_at(page, "sample-image", 0.6, 0.7)
    page.get_by_text("Region box rows").wait_for()
    choose(page, "region", "nose")
    page.get_by_text("Region nose").wait_for()
    choose(page, "method", "resefa")  # the fastest region method: this test is about the app
    page.locator("#num-directions input[type=number]").fill("2")
    page.locator("#num-directions input[type=number]").press("Enter")
    page.locator("#discover").click()
    page.locator("#alpha-1").wait_for(state="visible", timeout=DISCOVER_TIMEOUT_MS)
    page.locator("#directions img").wait_for()
    screenshot(page, "ui_discover.png")

    original = image_source(page, "edited-image")
    after, latencies = original, []
    for strength in ("4", "-3", "2"):
        before, started = after, time.perf_counter()
        page.locator("#alpha-0 input[type=range]").fill(strength)
        after = wait_for_new_image(page, "edited-image", before)  # Gradio names served images by content
        latencies.append(1000 * (time.perf_counter() - started))
    print(f"\nslider move -> new edited image shown: {', '.join(f'{ms:.0f}' for ms in latencies)} ms")
    assert after != original

    page.locator("#heat-map input").check()
    page.locator("#heat-image img").wait_for()
    screenshot(page, "ui_heatmap.png")

    page.locator("#export-gif").click()
    link = page.locator('#exported a[download$=".gif"]')
    link.wait_for()
    with page.expect_download() as download_info:
        link.click()
    gif = Image.open(io.BytesIO(Path(download_info.value.path()).read_bytes()))
    assert gif.format == "GIF" and gif.n_frames > 1

    assert page.requested_hosts <= LOCAL_HOSTS, f"requests left this machine: {page.requested_hosts - LOCAL_HOSTS}"


def test_bad_checkpoint_shows_an_error(page, tmp_path):
    missing = tmp_path / "no_such_model.safetensors"
    page.locator("#checkpoint textarea, #checkpoint input").first.fill(str(missing))
    page.locator("#load").click()
    page.get_by_text("checkpoint not found").first.wait_for()
    assert page.locator("#sample-image img").count() == 1  # the page still works
    assert page.requested_hosts <= LOCAL_HOSTS
