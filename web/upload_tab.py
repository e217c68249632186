"""The page's "transcribe a recording" tab: any length, progress bar, long-form engine path.

Decoding the file runs in a worker thread (`asyncio.to_thread`), so a long upload never
stalls the live streams sharing the event loop. Anything that is not usable audio (a
text file, a corrupt file, a file over MAX_AUDIO_SECONDS) gets the audio loader's own
message, e.g. "notes.txt is not a readable audio file (unknown format or corrupt data)".

Gradio's copy of the upload stays while the page shows it (a second Transcribe decodes it
again) and goes when the File box changes or the tab closes (`web.upload_files`); the
download files are the tab's one set in `web.exports`. Messages name the file, never a
server path.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

import gradio as gr

from engine.audio import load_audio
from engine.base import SAMPLE_RATE, DecodeRequest, Engine, TranscriptionError
from engine.formats import to_srt, to_text, to_vtt
from engine.word_times import with_segment_words
from engine.languages import supported_languages
from web.errors import public_reason
from web.exports import EXPORTS, ExportFiles
from web.jobs import JobQueue, JobsFull
from web.recorder import keep_upload
from web.store import TranscriptStore
from web.upload_files import UPLOADS, UploadFiles

#: Said when the File box still names an upload that is no longer on the server.
UPLOAD_GONE = (
    "The uploaded file is no longer on the server (an upload is kept while this page shows it, "
    "for an hour at most). Choose the file again."
)


def public_audio_error(exc: BaseException, path: str) -> str:
    """The audio loader's message with the file's name in place of its server path."""
    name = os.path.basename(path)
    message = str(exc).replace(path, name)
    folder = os.path.dirname(path)
    return message.replace(folder + os.sep, "").replace(folder, "") if folder else message


def build_upload_tab(
    engine: Engine,
    *,
    max_seconds: float,
    jobs: JobQueue | None = None,
    store: TranscriptStore | None = None,
    browser: gr.BrowserState | None = None,
    uploads: UploadFiles = UPLOADS,
    exports: ExportFiles = EXPORTS,
) -> None:
    """The tab's components and events; `jobs` is the long-form queue shared with the API.

    With a `store`, each finished transcript is kept in this browser's history (`browser`
    holds its id; see web/recorder.py). `uploads` keeps Gradio's copies of uploads while
    someone needs them; `exports` holds the download files."""
    jobs = jobs if jobs is not None else JobQueue(2, 8)
    multilingual = bool(engine.info.multilingual)
    with gr.Row():
        upload = gr.File(
            label="Recording (wav, flac, mp3, ogg/opus, m4a, webm, mp4…: any length)",
            type="filepath",
            file_count="single",
            elem_id="upload-file",
        )
        with gr.Column():
            from web.page import language_choices, task_radio

            language = gr.Dropdown(
                language_choices(supported_languages(engine)), value="auto", label="Language", visible=multilingual, elem_id="upload-language"
            )
            task = task_radio(visible=multilingual, elem_id="upload-task")
            speakers = gr.Checkbox(
                False, label="Label speakers (A, B, …)", elem_id="upload-speakers",
                info="Who said what: each line starts with its speaker; kept in the History and the downloads.",
            )
            word_times = gr.Checkbox(
                False, label="Word times", elem_id="upload-word-times",
                info="Each word's time and confidence, kept in the History (hover a word there); the file takes longer.",
            )
            button = gr.Button("Transcribe", variant="primary", elem_id="upload-run")
            stop = gr.Button("Stop", variant="stop", elem_id="upload-stop", size="sm")
    text = gr.Textbox(label="Transcript", lines=8, interactive=False, elem_id="upload-text", show_copy_button=True)
    with gr.Row():
        dl_txt = gr.DownloadButton("⬇ txt", value=None, interactive=False, size="sm", elem_id="upload-download-txt")
        dl_srt = gr.DownloadButton("⬇ srt", value=None, interactive=False, size="sm", elem_id="upload-download-srt")
        dl_vtt = gr.DownloadButton("⬇ vtt", value=None, interactive=False, size="sm", elem_id="upload-download-vtt")
    srt = gr.Textbox(label="Subtitles (SRT)", lines=8, interactive=False, elem_id="upload-srt")

    async def transcribe(
        path: str | None, lang: str, task_: str, diarize: bool, words: bool, browser_value: Any, request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        if not path:
            raise gr.Error("Choose an audio file first.")
        owner = getattr(request, "session_hash", None) or None
        try:
            # One queue with the API: MAX_JOBS at once; the tab's jobs end when it is closed.
            return await jobs.run(
                lambda: _job(path, lang, task_, progress, browser_value, owner, bool(diarize), bool(words)), source="page", owner=owner
            )
        except JobsFull as exc:
            raise gr.Error(str(exc), title="Busy") from None

    async def _job(
        path: str, lang: str, task_: str, progress: gr.Progress, browser_value: Any = None, owner: str | None = None,
        diarize: bool = False, words: bool = False,
    ) -> tuple[Any, ...]:
        name = os.path.basename(path)
        progress(0.0, desc="reading the file")
        job = ("job", secrets.token_hex(8))
        uploads.hold(path, job)  # while it decodes, whoever else lets go of the file
        try:
            if not os.path.exists(path):
                raise gr.Error(UPLOAD_GONE, title="Choose the file again")
            audio = await asyncio.to_thread(load_audio, path, max_seconds=max_seconds)
        except (TranscriptionError, ValueError) as exc:
            raise gr.Error(public_audio_error(exc, path), title="Not usable audio") from exc
        finally:
            uploads.release(job)  # decoded (or refused); the page's File box may still hold it
        total = len(audio) / SAMPLE_RATE
        progress(0.0, desc=f"transcribing {total:.0f} s of audio")

        def report(done: float, whole: float) -> None:
            whole = whole or total
            progress(min(1.0, done / whole) if whole else 1.0, desc=f"transcribing: {done:.0f} of {whole:.0f} s")

        language = None if not multilingual or lang in (None, "", "auto") else lang
        try:
            result = await engine.transcribe(
                DecodeRequest(
                    audio,
                    language=language,
                    task=(task_ if multilingual and task_ in ("transcribe", "translate") else "transcribe"),
                    timestamps=True,
                    # Speakers need them too: a segment is cut where the speaker changes, between words.
                    word_timestamps=diarize or words,
                    progress=report,
                )
            )
        except (TranscriptionError, ValueError) as exc:
            raise gr.Error(public_reason(exc), title="Transcription failed") from exc
        if diarize:
            from engine.speakers.diarize import label_speakers  # scikit-learn and torch: loaded when first asked

            from engine.speakers.encoder import EncoderMissing

            progress(1.0, desc="labelling speakers")
            try:
                result = await asyncio.to_thread(label_speakers, audio, result)
            except EncoderMissing as exc:  # an install without the encoder's wheel: the text, unlabelled
                gr.Warning(f"Speakers could not be labelled: {exc}.")
        if words or diarize:  # speakers computed them anyway
            result = with_segment_words(result)  # the History keeps words with their segment
        segments = result.segments
        transcript_id = await keep_upload(store, browser_value, name, result, total)
        stem = os.path.splitext(name)[0] or "transcript"
        bodies = (("txt", to_text(segments) if segments else result.text), ("srt", to_srt(segments)), ("vtt", to_vtt(segments)))
        # The tab's one set of download files (the previous one goes); a History Delete of
        # this transcript removes it too. API callers without a session get their own set.
        paths = await asyncio.to_thread(
            exports.write, owner or job, "upload", [(f"{stem}.{fmt}", body) for fmt, body in bodies], transcript_id=transcript_id
        )
        files = [gr.DownloadButton(value=p, interactive=True) for p in paths]
        shown = to_text(segments).rstrip("\n") if diarize and segments else result.text
        return (shown, to_srt(segments), *files)

    event = button.click(
        transcribe,
        inputs=[upload, language, task, speakers, word_times, browser if browser is not None else gr.State(None)],
        outputs=[text, srt, dl_txt, dl_srt, dl_vtt],
        concurrency_limit=None,  # the JobQueue is the limit (MAX_JOBS / MAX_QUEUED), with a clear message
    )
    # Stop cancels the job (the engine aborts its pieces); so does closing the tab.
    stop.click(None, None, None, cancels=[event])

    async def on_file(path: str | None, request: gr.Request) -> None:
        # The File box shows this upload now (None: cleared): the tab holds it, and lets go
        # of the one it showed before.
        session = getattr(request, "session_hash", None)
        if session:
            uploads.hold(path, ("tab", session))

    upload.change(on_file, inputs=[upload], outputs=None, queue=False, show_progress="hidden", api_name=False)
    root = gr.context.Context.root_block
    if root is not None:

        async def on_close(request: gr.Request) -> None:  # async: on the event loop, like the jobs
            session = getattr(request, "session_hash", None)
            if session:
                jobs.cancel_owner(session)
                uploads.release(("tab", session))
                exports.drop(session)  # every download set of the tab (live tab aside)

        root.unload(on_close)
