"""Entry point: one server, one port, one shared engine: the page and the HTTP API.

Run `./run.sh` (sets up .venv) or `.venv/bin/python app.py`. Host and port come from
Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.
"""

from __future__ import annotations

import argparse
import logging
import os

import gradio as gr
import uvicorn
from fastapi import FastAPI

from engine.base import Engine
from engine.factory import create_engine
from settings import Settings
from web.api import include_api
from web.sessions import StreamSlots
from web.upload_tab import build_upload_tab

log = logging.getLogger("app")


def build_app(engine: Engine, settings: Settings) -> FastAPI:
    api = FastAPI(title="Real-time Whisper")
    include_api(api, engine, settings, StreamSlots(settings.max_streams))
    with gr.Blocks(title="Real-time Whisper") as page:
        gr.Markdown(f"## Real-time Whisper\nModel **{engine.info.model}** on {engine.info.engine} ({engine.info.device})")
        with gr.Tab("Transcribe a recording"):
            build_upload_tab(engine, max_seconds=settings.max_audio_seconds)
    return gr.mount_gradio_app(api, page, path="/")


def main() -> None:
    parser = argparse.ArgumentParser(description="Real-time Whisper transcription: page + API")
    Settings.add_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_args(args)
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    engine = create_engine(settings)
    log.info("engine ready: %s", engine.info)
    uvicorn.run(build_app(engine, settings), host=host, port=port, log_level="info")


if __name__ == "__main__":
    main()
