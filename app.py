"""Entry point: one server, one port, one shared engine: the page and the HTTP API.

Run `./run.sh` (sets up .venv) or `.venv/bin/python app.py`. Host and port come from
Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (127.0.0.1:7860 by default; the
Docker image sets 0.0.0.0 for a Space).

    /            the page (Gradio): live transcription (FastRTC WebRTC) + recordings
    /health, /v1/*, /v1/realtime, /metrics   the API (web/api.py)

The page's live streams and the realtime WebSocket share one StreamSlots (MAX_STREAMS).
"""

from __future__ import annotations

import argparse
import logging

import gradio as gr
import uvicorn
from fastapi import FastAPI

from engine.base import Engine
from engine.factory import create_engine
from settings import Settings
from web.api import include_api
from web.metered import metered
from web.page import CSS, build_live_tab
from web.sessions import StreamSlots
from web.turn import rtc_configurations
from web.upload_tab import build_upload_tab

log = logging.getLogger("app")


def build_page(engine: Engine, settings: Settings, slots: StreamSlots) -> gr.Blocks:
    client_rtc, server_rtc = rtc_configurations(settings.turn_provider, settings.hf_token or None, settings.space_id)
    info = engine.info
    with gr.Blocks(title="Real-time Whisper", css=CSS, analytics_enabled=False) as page:
        gr.Markdown(
            f"## 🎙️ Real-time Whisper\n"
            f"Model **{info.model}** on {info.engine} ({info.device}). Press **Record**, speak, "
            "and watch the words appear: grey italics are still tentative, plain text is settled."
        )
        with gr.Tab("Live", id="live"):
            build_live_tab(engine, settings, slots, rtc_configuration=client_rtc, server_rtc_configuration=server_rtc)
        with gr.Tab("Transcribe a recording", id="upload"):
            build_upload_tab(engine, max_seconds=settings.max_audio_seconds)
    page.queue(default_concurrency_limit=None)
    return page


def build_app(engine: Engine, settings: Settings) -> FastAPI:
    api = FastAPI(title="Real-time Whisper")
    slots = StreamSlots(settings.max_streams)
    engine = metered(engine)  # once, for the API and the page alike (/metrics)
    include_api(api, engine, settings, slots)
    page = build_page(engine, settings, slots)
    api.state.slots = slots
    api.state.page = page
    return gr.mount_gradio_app(api, page, path="/", max_file_size=f"{int(settings.max_upload_mb)}mb")


def server_address(settings: Settings | None = None) -> tuple[str, int]:
    """Host and port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (read by settings)."""
    settings = settings or Settings.from_env()
    return settings.server_name, int(settings.server_port)


def main() -> None:
    parser = argparse.ArgumentParser(description="Real-time Whisper transcription: page + API")
    Settings.add_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_args(args)
    host, port = server_address(settings)
    engine = create_engine(settings)
    log.info("engine ready: %s", engine.info)
    app = build_app(engine, settings)
    log.info("serving the page and the API on http://%s:%d", host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")


if __name__ == "__main__":
    main()
