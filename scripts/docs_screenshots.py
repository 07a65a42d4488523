#!/usr/bin/env python3
"""Retake the app's pictures in docs/images/: ``python scripts/docs_screenshots.py``.

Starts ``python app.py`` as a new user first meets it offline (only the default style's
weights, and those are the project's test weights, ``tests/data/proxy_toon.pt``, copied as
``face_paint_512_v2.pt``), drives it in Debian's Chromium, presses the button on the example
photo and saves what the screen shows once the result is there:

- ``docs/images/app-photo-and-anime.jpg``: a desktop, 1280 x 900 (the README's picture);
- ``docs/images/app-phone-result.jpg``: a phone, 390 x 844 (docs/app.md).

Every picture made this way shows the test weights' output, not a published style: the
captions where they are used say so.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from app_helpers import AppServer, app_env, launch_chromium, open_app, press_and_wait, upload  # noqa: E402
from PIL import Image  # noqa: E402

SHOTS = {
    "app-photo-and-anime.jpg": dict(viewport={"width": 1280, "height": 900}),
    "app-phone-result.jpg": dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True),
}


def main() -> None:
    from playwright.sync_api import sync_playwright

    out = ROOT / "docs" / "images"
    home = Path(tempfile.mkdtemp(prefix="animegan-shots-"))
    try:
        weights = home / "weights"
        weights.mkdir()
        shutil.copy(ROOT / "tests" / "data" / "proxy_toon.pt", weights / "face_paint_512_v2.pt")  # test weights
        with AppServer(app_env(weights, home), home / "app.log") as server, sync_playwright() as p:
            browser = launch_chromium(p)
            for name, options in SHOTS.items():
                ctx = browser.new_context(**options)
                page = open_app(ctx, server.url)
                upload(page, ROOT / "examples" / "astronaut.png")
                press_and_wait(page)
                page.wait_for_timeout(800)  # the end of a smooth scroll
                png = home / "shot.png"
                page.screenshot(path=str(png))
                Image.open(png).convert("RGB").save(out / name, "JPEG", quality=85, optimize=True)
                print(out / name)
                ctx.close()
            browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
