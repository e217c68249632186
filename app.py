"""Entry point: one server, one port, one shared engine: the page and the HTTP API.

Run `./run.sh` (sets up .venv) or `.venv/bin/python app.py`. Host and port come from
Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (127.0.0.1:7860 by default; the
Docker image sets 0.0.0.0 for a Space).

    /            the page (Gradio): live transcription (FastRTC WebRTC) + recordings
    /health, /v1/*, /v1/realtime, /metrics   the API (web/api.py)

The page's live streams and the realtime WebSocket share one StreamSlots (MAX_STREAMS).
SIGTERM (a restart or deploy) drains first: no new streams or jobs, /health 503
"draining", the finals in flight finish (DRAIN_TIMEOUT_S), then the store is flushed and
the process exits (web/shutdown.py).
"""

from __future__ import annotations

import argparse
import logging

from engine.runtime_env import apply_runtime_env

# Before gradio, huggingface_hub and vLLM read them at import: caches on a Space's
# persistent storage, usage statistics off (engine.runtime_env).
apply_runtime_env()

import gradio as gr  # noqa: E402
import uvicorn
from fastapi import FastAPI
from starlette.routing import Mount

from engine.base import Engine
from engine.factory import create_engine
from engine.gpu import GpuUnavailable
from engine.speakers.choice import configure as configure_speaker_encoder
from settings import Settings, SettingsError
from web.api import include_api
from web.auth import LOGIN_MESSAGE, DocsGate, page_auth
from web.health import public_device, public_info
from web.jobs import JobQueue
from web.metered import metered
from web.history import build_history_tab
from web.page import CSS, build_live_tab
from web.realtime import WS_MAX_SIZE
from web.recorder import browser_state
from web.redact import install_log_redaction
from web.sessions import StreamSlots
from web.shutdown import GRACEFUL_HTTP_S, DrainingServer
from web.store import StoreError, TranscriptStore
from web.turn import rtc_configurations
from web.upload_tab import build_upload_tab

log = logging.getLogger("app")


def build_page(
    engine: Engine, settings: Settings, slots: StreamSlots, jobs: JobQueue | None = None, store: TranscriptStore | None = None
) -> gr.Blocks:
    client_rtc, server_rtc = rtc_configurations(settings.turn_provider, settings.hf_token.get_secret_value() or None, settings.space_id)
    info = engine.info
    # delete_cache: Gradio's copies of uploads and downloads go after an hour (checked every 10 min).
    with gr.Blocks(title="Real-time Whisper", css=CSS, analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown(
            f"## 🎙️ Real-time Whisper\n"
            f"Model **{info.model}** on {info.engine} ({public_device(info)}). Press **Record**, speak, "
            "and watch the words appear: grey italics are still tentative, plain text is settled."
        )
        # This browser's id (localStorage): its transcripts survive reloads and restarts.
        browser = browser_state(store, settings.browser_key.get_secret_value()) if store is not None else None
        with gr.Tab("Live", id="live"):
            build_live_tab(
                engine, settings, slots, rtc_configuration=client_rtc, server_rtc_configuration=server_rtc,
                store=store, browser=browser,
            )
        with gr.Tab("Transcribe a recording", id="upload"):
            build_upload_tab(engine, max_seconds=settings.max_audio_seconds, jobs=jobs, store=store, browser=browser)
        if store is not None and browser is not None:
            build_history_tab(store, browser)
    page.queue(default_concurrency_limit=None)
    return page


def build_app(engine: Engine, settings: Settings, store: TranscriptStore | None = None) -> FastAPI:
    """The one server; `store` defaults to the transcript database in DATA_DIR or at DATABASE_URL (closed at shutdown)."""
    api = FastAPI(title="Real-time Whisper")
    if store is None:
        store = TranscriptStore.open(settings.data_dir, settings.database_url.get_secret_value())
    api.state.store = store
    api.router.on_shutdown.append(store.close)  # finishes pending writes first
    slots = StreamSlots(settings.max_streams)
    engine = metered(engine)  # once, for the API and the page alike (/metrics)
    jobs = include_api(api, engine, settings, slots)  # one long-form queue for the API and the page
    page = build_page(engine, settings, slots, jobs, store)
    api.state.slots = slots
    api.state.page = page
    api.state.jobs = jobs
    # API_KEY guards the page too (Gradio's login: any user name, the key as password),
    # unless PUBLIC_PAGE=true says it is meant to be open.
    auth = page_auth(settings.api_key.get_secret_value(), settings.public_page)
    app = gr.mount_gradio_app(
        api, page, path="/", max_file_size=f"{int(settings.max_upload_mb)}mb", auth=auth,
        auth_message=LOGIN_MESSAGE if auth else None,
    )
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")

    def page_session(cookies: dict[str, str]) -> bool:
        return any(k.startswith("access-token") and v in gradio_app.tokens for k, v in cookies.items())

    app.add_middleware(DocsGate, api_key=settings.api_key.get_secret_value(), session_ok=page_session)
    return app


def server_address(settings: Settings | None = None) -> tuple[str, int]:
    """Host and port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (read by settings)."""
    settings = settings or Settings.from_env()
    return settings.server_name, int(settings.server_port)


def main() -> None:
    parser = argparse.ArgumentParser(description="Real-time Whisper transcription: page + API")
    Settings.add_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_args(args)
    except SettingsError as exc:  # names the variable: "MAX_STREAMS='lots': Input should be ..."
        raise SystemExit(f"error: {exc}") from None
    try:  # SPEAKER_ENCODER (or --speaker-encoder) checked now; a hub model is fetched at first use
        configure_speaker_encoder(settings.speaker_encoder, settings.hf_token.get_secret_value())
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    host, port = server_address(settings)
    try:  # before the engine: a bad DATA_DIR or DATABASE_URL should fail in seconds, not after the model loads
        store = TranscriptStore.open(settings.data_dir, settings.database_url.get_secret_value())
    except StoreError as exc:
        raise SystemExit(f"error: {exc}") from None
    log.info("transcripts kept in %s", store.path)
    try:
        engine = create_engine(settings)
    except GpuUnavailable as exc:  # DEVICE=cuda (the Docker image) and no usable GPU: say why, no traceback
        raise SystemExit(f"error: {exc}") from None
    log.info("engine ready: %s", public_info(engine.info))  # no endpoint credentials in the log
    app = build_app(engine, settings, store)
    log.info("serving the page and the API on http://%s:%d", host, port)
    # ws_max_size: the realtime WebSocket's frame limit, enforced before a frame is buffered.
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", ws_max_size=WS_MAX_SIZE, timeout_graceful_shutdown=GRACEFUL_HTTP_S
    )
    # SIGTERM: drain (finals in flight delivered), then uvicorn's shutdown, then the store's close.
    server = DrainingServer(config, app.state.slots, app.state.jobs, settings.drain_timeout_s)
    install_log_redaction()  # after uvicorn set up its loggers: no ?api_key= in the access log
    server.run()


if __name__ == "__main__":
    main()
