"""Bounded work per request against the real app (issue 11, items 2 and 8): oversized
request bodies and oversized images are refused before they cost memory, and what a
visitor reads never holds the server's folders."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from app_helpers import post
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def noise_png(side: int) -> bytes:
    arr = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=0)
    return buf.getvalue()


@pytest.mark.slow
def test_an_oversized_data_url_is_refused_before_it_is_read(app_server):
    png = noise_png(2400)  # 17 MB of pixels, 23 MB as a data: URL: over the 16 MB request limit
    body = ('{"data": [{"url": "data:image/png;base64,' + base64.b64encode(png).decode()
            + '", "meta": {"_type": "gradio.FileData"}}, "face_paint_512_v2", "off"]}').encode()
    _, peak_before = peak_rss_mb(app_server.proc.pid)
    start = time.perf_counter()
    status, text = post(app_server.url + "/gradio_api/call/stylize", body)
    assert status == 413 and time.perf_counter() - start < 5
    assert "larger than the 16 MB this app accepts" in text
    _, peak_after = peak_rss_mb(app_server.proc.pid)
    assert peak_after - peak_before < 40, f"the server's peak grew {peak_after - peak_before:.0f} MB"
    # a photo of ordinary size still goes through the same route
    ok = noise_png(64)
    small = ('{"data": [{"url": "data:image/png;base64,' + base64.b64encode(ok).decode()
             + '", "meta": {"_type": "gradio.FileData"}}, "face_paint_512_v2", "off"]}').encode()
    status, text = post(app_server.url + "/gradio_api/call/stylize", small)
    assert status == 200 and "event_id" in text


@pytest.mark.slow
def test_an_oversized_live_frame_is_refused_from_its_header(app_server, tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (12000, 12000)).save(path)  # 144 MP of zeros: a small file, 432 MB once decoded
    client = Client(app_server.url, verbose=False)
    _, peak_before = peak_rss_mb(app_server.proc.pid)
    start = time.perf_counter()
    with pytest.raises(AppError, match="over the limit of 17 megapixels"):
        client.predict(handle_file(str(path)), "face_paint_512_v2", 128, False, False, api_name="/stylize_frame")
    assert time.perf_counter() - start < 10
    _, peak_after = peak_rss_mb(app_server.proc.pid)
    assert peak_after - peak_before < 100, f"the server's peak grew {peak_after - peak_before:.0f} MB"
    assert app_server.alive()


def test_messages_for_visitors_hold_no_server_paths(tmp_path, monkeypatch):
    import gradio as gr

    from animegan.app.photo import App
    from animegan.settings import Settings

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "secret-server-folder"
    folder.mkdir()
    (folder / "face_paint_512_v2.pt").write_bytes(b"not a checkpoint at all")
    app = App(settings=Settings(weights_dir=folder, backend="torch-fp32", startup_timeout=5,
                                hub_cache=tmp_path / "hub"))
    app.check_weights(timeout=5)
    assert "load face_paint_512_v2.pt: it is not a plain tensor checkpoint" in app.unavailable["face_paint_512_v2"]
    assert all(str(tmp_path) not in why for why in app.unavailable.values())
    assert str(tmp_path) not in app.notice()
    app._failed_at.clear()  # ask again now, as after the retry delay
    with pytest.raises(gr.Error) as info:
        app._run(str(folder / "missing.png"), "face_paint_512_v2", "off", 256, None)
    assert "secret-server-folder" not in info.value.message and str(tmp_path) not in info.value.message


def test_the_page_says_how_long_files_are_kept():
    from animegan.app import build
    from animegan.app.photo import App
    from animegan.settings import Settings

    settings = Settings(backend="torch-fp32", cache_minutes=5)
    demo = build(settings, App(settings=settings), check_weights=False)
    assert demo.delete_cache == (60, 300)
    footer = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "footer").value
    assert "deleted within about 5 minutes" in footer and "not stored" not in footer
