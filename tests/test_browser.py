"""The real app in a real browser: Debian's Chromium driven by Playwright.

Screenshots go to screenshots/ (ignored by git): look at them after a change to the page.
Without Chromium these tests are skipped locally, but fail in CI (CI=true), where
scripts/test.sh installs it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from app_helpers import (
    SCREENSHOTS,
    chromium_missing_reason,
    error_toast,
    have_chromium,
    launch_chromium,
    open_app,
    press_and_wait,
    upload,
)
from conftest import photo

if not have_chromium():
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(chromium_missing_reason(), pytrace=False)
    pytest.skip(chromium_missing_reason(), allow_module_level=True)

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.slow  # Chromium and the app in a subprocess

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture
def desktop(browser):
    ctx = browser.new_context(viewport=DESKTOP, permissions=["camera"])
    yield ctx
    ctx.close()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_upload_press_and_see_the_result(app_server, desktop):
    page = open_app(desktop, app_server.url)
    shot(page, "desktop-start.png")
    upload(page, photo("astronaut.png"))
    seconds, status = press_and_wait(page)
    assert "Face Paint v2" in status and "512 x 512" in status, status
    assert page.locator("#result-image img").evaluate("i => [i.naturalWidth, i.naturalHeight]") == [512, 512]
    shot(page, "desktop-result.png")

    # the same photo again: served from the result cache
    for _ in range(2):
        _, status = press_and_wait(page)
        assert "from cache" in status, status

    # before / after
    page.get_by_role("tab", name="Before / after").click()
    slider_imgs = page.locator("#compare-slider img")
    slider_imgs.first.wait_for(state="visible", timeout=30_000)
    assert slider_imgs.count() >= 2
    shot(page, "desktop-compare.png")


def test_webcam_snapshot_is_stylized(app_server, desktop):
    page = open_app(desktop, app_server.url)
    page.locator("#input-image button[aria-label='Capture from camera']").click()
    grant = page.locator("#input-image [title='grant webcam access'] button")
    if grant.count():
        grant.click()
    page.wait_for_selector("#input-image video:not(.hide)", timeout=30_000)
    page.wait_for_function("() => document.querySelector('#input-image video').videoWidth > 0", timeout=30_000)
    shot(page, "desktop-webcam.png")
    page.locator("#input-image button[aria-label='capture photo']").click()
    page.wait_for_function(
        "() => { const i = document.querySelector('#input-image img:not(.hide)');"
        " return i && i.src && i.complete && i.naturalWidth > 0; }", timeout=60_000)
    seconds, status = press_and_wait(page)
    assert "Face Paint v2" in status, status
    shot(page, "desktop-webcam-result.png")


def test_phone_width_390(app_server, browser):
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page = open_app(ctx, app_server.url)
        shot(page, "phone-390-start.png")
        upload(page, photo("coffee.png"))
        _, status = press_and_wait(page)
        assert "512 x 341" in status, status
        page.locator("#result-image").scroll_into_view_if_needed()
        shot(page, "phone-390-result.png")
        # nothing wider than the screen: no sideways scrolling on a phone
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        ctx.close()


def test_bad_file_shows_a_message_and_the_page_keeps_working(app_server, desktop, tmp_path):
    page = open_app(desktop, app_server.url)
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"definitely not a PNG")
    page.locator("#input-image input[type=file]").set_input_files(str(bad))
    page.wait_for_timeout(500)
    page.click("#run-button")
    assert "not an image" in error_toast(page)
    shot(page, "desktop-error.png")
    upload(page, photo("camera.png"))
    _, status = press_and_wait(page)
    assert "512 x 512" in status, status


def test_gallery_licence_card_and_faces_in_picker(app_server, desktop):
    """The style gallery shows a picture per style, the licence card follows the chosen
    style, and the "Faces in" picker appears when faces are pasted."""
    from animegan.styles import STYLES

    page = open_app(desktop, app_server.url)
    card = page.locator("#licence-card")
    assert "terms not stated" in card.inner_text()  # the default style, Face Paint v2
    # thumbnails are made in the background at start: reload until none is "(preparing)"
    deadline = time.monotonic() + 120
    while True:
        srcs = page.eval_on_selector_all("#style-gallery img", "els => els.map(e => e.src)")
        text = page.locator("#style-gallery").inner_text()
        if len(srcs) == len(STYLES) and "preparing" not in text:
            break
        assert time.monotonic() < deadline, f"gallery never filled: {text}"
        time.sleep(2)
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector("#run-button", timeout=60_000)
    # every style has a thumbnail of its own, not the plain photo (the test weights are one
    # file under every name, so the thumbnails are alike, but none is the photo itself)
    assert len(set(srcs)) == 1 and "unavailable" not in text
    made = Path(app_server.env["HF_HOME"], "hub", "animegan-artefacts", "thumbnails")  # the server's cache
    assert {p.name.split("-")[0] for p in made.glob("*.png")} >= set(STYLES)
    page.locator("#style-picker label", has_text="Paprika — ").click()
    page.wait_for_function("() => document.querySelector('#licence-card').innerText.includes('non-commercial')")
    assert "Paprika: non-commercial use only" in page.locator("#licence-card").inner_text()
    page.locator("#style-gallery button").nth(list(STYLES).index("celeba_distill")).click()  # a thumbnail picks
    page.wait_for_function("() => document.querySelector('#licence-card').innerText.includes('Webtoon')")
    assert page.locator("#style-picker input[value=celeba_distill]").is_checked()
    assert not page.locator("#face-style").is_visible()
    page.locator("#face-mode label", has_text="Paste faces back").click()
    page.locator("#face-style").wait_for(state="visible")
    shot(page, "desktop-gallery-licence.png")
