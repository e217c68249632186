"""The page's "transcribe a recording" tab: any length, progress bar, long-form engine path."""

from __future__ import annotations

import gradio as gr

from engine.audio import load_audio
from engine.base import Engine, TranscriptionError
from engine.formats import to_srt


def build_upload_tab(engine: Engine, *, max_seconds: float) -> None:
    with gr.Row():
        upload = gr.Audio(sources=["upload"], type="filepath", label="Recording")
        with gr.Column():
            language = gr.Textbox(label="Language (ISO code, empty = detect)", visible=engine.info.multilingual)
            button = gr.Button("Transcribe", variant="primary")
    text = gr.Textbox(label="Transcript", lines=8, interactive=False)
    srt = gr.Textbox(label="Subtitles (SRT)", lines=8, interactive=False)

    async def transcribe(path: str | None, lang: str, progress: gr.Progress = gr.Progress()) -> tuple[str, str]:
        if not path:
            raise gr.Error("Choose an audio file first.")
        try:
            audio = load_audio(path, max_seconds=max_seconds)
            result = await engine.transcribe(
                audio,
                language=(lang or None),
                timestamps=True,
                progress=lambda done, total: progress(done / total if total else 1.0, desc="transcribing"),
            )
        except (TranscriptionError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc
        return result.text, to_srt(result.segments)

    button.click(transcribe, inputs=[upload, language], outputs=[text, srt])
