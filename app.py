"""The Hugging Face Space entry point: ``python app.py`` (host and port from Gradio's
usual GRADIO_SERVER_NAME / GRADIO_SERVER_PORT environment variables)."""

import logging

from animegan.app import build, launch
from animegan.settings import Settings

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)

demo = build(Settings.from_env())

if __name__ == "__main__":
    launch(demo)
