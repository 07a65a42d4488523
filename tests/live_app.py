"""A small app with the live and video tabs, for the tests (the real app wires them into
animegan.ui). Run: ``python tests/live_app.py PORT``; weights from ANIMEGAN_WEIGHTS_DIR."""

from __future__ import annotations

import os
import sys

import gradio as gr

from animegan import Stylizer
from animegan.ui_live import add_live_tab, add_video_tab


def build(stylizer: Stylizer) -> gr.Blocks:
    time_limit = float(os.environ.get("ANIMEGAN_LIVE_TIME_LIMIT", "60"))
    max_seconds = float(os.environ.get("ANIMEGAN_VIDEO_MAX_SECONDS", "30"))
    with gr.Blocks(title="animegan live and video") as demo:
        with gr.Tabs():
            add_live_tab(stylizer, time_limit=time_limit)
            add_video_tab(stylizer, max_seconds=max_seconds)
    return demo


if __name__ == "__main__":
    port = int(sys.argv[1])
    stylizer = Stylizer()
    stylizer.backend()  # load before serving
    demo = build(stylizer)
    demo.queue(max_size=32).launch(server_name="127.0.0.1", server_port=port, show_error=True)
