"""How the app looks and what it says: theme, CSS (style.css beside this file), texts."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

CSS_FILE = Path(__file__).resolve().parent / "style.css"


SAKURA = gr.themes.Color(
    name="sakura",
    c50="#fff5f8", c100="#ffe8f0", c200="#fcd3e1", c300="#f8b7cd", c400="#f093b3",
    c500="#e2709a", c600="#c94f7c", c700="#a83a64", c800="#862e50", c900="#6b2641", c950="#4a1a2d",
)
CREAM = gr.themes.Color(
    name="cream",
    c50="#fffaf3", c100="#fbf3e8", c200="#f1e4d6", c300="#e2cfbf", c400="#bfa69a",
    c500="#8f7780", c600="#6b5a60", c700="#54444a", c800="#3b2a30", c900="#2c1f24", c950="#1d1418",
)


def theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue=SAKURA, secondary_hue=SAKURA, neutral_hue=CREAM, radius_size="lg").set(
        body_background_fill="#fffaf3",
        body_text_color="#3b2a30",
        body_text_color_subdued="#6b5a60",
        background_fill_primary="#ffffff",
        background_fill_secondary="#fff5f8",
        block_background_fill="#ffffff",
        block_border_color="#f6d5e0",
        block_label_background_fill="#fff0f5",
        block_label_text_color="#862e50",
        block_title_text_color="#862e50",
        button_primary_background_fill="#a83a64",  # 6:1 against the white text
        button_primary_background_fill_hover="#862e50",
        button_primary_text_color="#ffffff",
        button_primary_border_color="#a83a64",
        link_text_color="#a83a64",
        link_text_color_hover="#862e50",
        slider_color="#c94f7c",
        checkbox_label_background_fill_selected="#fde7ee",
        checkbox_label_text_color_selected="#6b2641",
        checkbox_background_color_selected="#a83a64",
        checkbox_border_color_selected="#a83a64",
        checkbox_border_color="#b48a9b",  # unselected radio circles must stay visible
        input_border_color="#e7c3d0",
    )


HEADER = """
<div id="header">
  <h1>🌸 AnimeGAN</h1>
  <p>Turn a photo into an anime picture with AnimeGANv2, on a plain CPU.</p>
</div>
"""

HOW_TO = (
    "**Faces**: *Portrait crop* makes a square portrait of the largest face; *Paste faces back* redoes "
    "each face and blends it into the photo. Face Paint suits faces, Paprika scenes."
)


# The palette is a light one: keep it even when the visitor's system prefers dark mode.
FORCE_LIGHT_JS = """
() => {
  document.body.classList.remove('dark');
  document.documentElement.style.colorScheme = 'light';
}
"""


def footer(minutes: float = 10) -> str:
    return (
        "Model: **AnimeGANv2** by Xin Chen, Gang Liu and Gang Chen · PyTorch port by "
        "[bryandlee/animegan2-pytorch](https://github.com/bryandlee/animegan2-pytorch) (its code under the "
        "MIT licence; each style's weights have their own terms, shown under the style picker) · "
        "Weights via the [Hugging Face Hub](https://huggingface.co/akhaliq/AnimeGANv2-pytorch).\n\n"
        "Example photos: scikit-image sample data, public domain / CC0 (NASA, SpaceX, Lav Varshney, "
        "Stefan van der Walt, Rachel Michetti).\n\n"
        "**Your files:** photos, webcam frames and clips are processed on this server and kept only "
        f"in its temporary cache, so that your browser can show and download the results: every upload "
        f"and result is deleted within about {minutes:g} minutes, and all of them when the server stops. "
        "Nothing is shared, logged or used for anything else."
    )
