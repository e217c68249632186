"""Command line: `python -m engine transcribe FILE [--model M] [--language L] [--task translate] [--format F]
[--word-timestamps] [--diarize]`,
and `python -m engine doctor [--quick]`, the self-check of a fresh machine (engine.doctor).

The transcript goes to stdout; logs and the progress bar go to stderr, so the output
can be piped or redirected as is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import replace

from engine.base import DecodeRequest, TranscriptionError
from engine.cli import command_parser, vllm_logs_to_stderr
from engine.formats import CUE_MAX_SECONDS, CUE_MAX_WORDS
from engine.runtime_env import apply_runtime_env
from settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser, tr = command_parser(
        "python -m engine", __doc__, "transcribe", "transcribe an audio file (wav, flac, ogg/opus, mp3, m4a, ...)"
    )
    tr.add_argument("--language", default=None, help="ISO 639-1 code; detected when omitted (multilingual models)")
    tr.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    tr.add_argument("--prompt", default=None, help="text that conditions the decoder (names, spelling)")
    tr.add_argument("--format", choices=["text", "json", "srt", "vtt"], default="text")
    tr.add_argument(
        "--word-timestamps",
        action="store_true",
        help="time every word: json gets `words` (word, start, end, probability); srt/vtt get short word-timed cues",
    )
    tr.add_argument(
        "--diarize",
        action="store_true",
        help="label speakers (A, B, ...): text and srt lines start 'A: ', vtt uses voice spans, json segments get `speaker`",
    )
    tr.add_argument("--cue-words", type=int, default=CUE_MAX_WORDS, help="with --word-timestamps: most words in one srt/vtt cue")
    tr.add_argument("--cue-seconds", type=float, default=CUE_MAX_SECONDS, help="with --word-timestamps: longest srt/vtt cue (s)")
    tr.add_argument("--progress", choices=["auto", "always", "never"], default="auto")
    tr.add_argument("-v", "--verbose", action="store_true")
    engine_settings = ["model", "model_cache", "engine", "endpoint_url", "hf_token", "device", "enforce_eager"]
    engine_settings += ["max_num_seqs", "kv_cache_mb", "kv_cache_dtype", "cpu_dtype", "max_audio_seconds"]
    engine_settings += [name for name in Settings.model_fields if name.startswith("remote_")]
    Settings.add_arguments(tr, engine_settings)
    return parser


async def _transcribe(args: argparse.Namespace) -> str:
    from engine.audio import load_audio
    from engine.factory import create_engine
    from engine.formats import to_json, to_srt, to_text, to_vtt, word_cues
    from engine.progress import make_progress

    settings = Settings.from_args(args)
    audio = load_audio(args.file, max_seconds=settings.max_audio_seconds)
    engine = create_engine(settings)
    try:
        request = DecodeRequest(
            audio,
            language=args.language,
            task=args.task,
            prompt=args.prompt,
            timestamps=args.format in ("srt", "vtt", "json"),
            word_timestamps=args.word_timestamps or args.diarize,
            progress=make_progress(args.progress),
        )
        result = await engine.transcribe(request)
    finally:
        await engine.close()
    if args.diarize:
        from engine.speakers.diarize import diarize
        from engine.speakers.encoder import shared_encoder

        result = replace(result, segments=diarize(shared_encoder(), audio, result))
        if args.format == "text":
            return to_text(result.segments).rstrip("\n")
        if not args.word_timestamps:
            result = replace(result, words=[])
    if args.format == "json":
        return json.dumps(to_json(result), ensure_ascii=False, indent=2)
    # Speakers label segments (cut where the voice changes): their cues, not word cues.
    cues = word_cues(result.words, args.cue_words, args.cue_seconds) if args.word_timestamps and not args.diarize else result.segments
    if args.format == "srt":
        return to_srt(cues)
    if args.format == "vtt":
        return to_vtt(cues)
    return result.text


def _doctor(argv: list[str]) -> int:
    from engine import doctor

    parser = argparse.ArgumentParser(prog="python -m engine doctor", description=(doctor.__doc__ or "").split("\n\n")[0])
    doctor.add_arguments(parser)
    args = parser.parse_args(argv)
    vllm_logs_to_stderr()  # before the engine imports vLLM: stdout keeps the verdicts only
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return doctor.main(args, Settings.from_args(args))


def main(argv: list[str] | None = None) -> int:
    apply_runtime_env()  # before vLLM and huggingface_hub read their variables
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["doctor"]:
        return _doctor(argv[1:])
    args = build_parser().parse_args(argv)
    vllm_logs_to_stderr()  # before the engine imports vLLM
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        print(asyncio.run(_transcribe(args)))
    except (TranscriptionError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
