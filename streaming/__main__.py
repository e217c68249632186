"""Command line: `python -m streaming simulate FILE [--realtime] [--streams N] [--reference TEXTFILE]`.

Feeds FILE through the full streaming pipeline (resampling, VAD, segmenter, partial and
final decodes on the configured engine, guards, stabiliser) and prints every event as a
JSON line, then one line `{"summary": {...}}` (see `streaming.harness`). Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from engine.cli import command_parser, vllm_logs_to_stderr
from settings import SAMPLE_RATE, Settings


def build_parser() -> argparse.ArgumentParser:
    parser, sim = command_parser("python -m streaming", __doc__, "simulate", "stream an audio file through the pipeline and score it")
    sim.add_argument("--realtime", action="store_true", help="feed on a real-time clock (default: as fast as possible)")
    sim.add_argument("--streams", type=int, default=1, help="concurrent simulated streams of the same file")
    sim.add_argument("--stagger", type=float, default=0.0, help="seconds between the starts of successive streams")
    sim.add_argument("--reference", default=None, help="reference transcript (text file) for the WER")
    sim.add_argument(
        "--segments",
        default=None,
        help="segments.json with true utterance times (default: FILE's sibling <name>.segments.json if present)",
    )
    sim.add_argument("--offline", action="store_true", help="also transcribe the whole file offline and report its WER")
    sim.add_argument("--no-prompt", action="store_true", help="do not use the previous final as decoder prompt")
    sim.add_argument("--no-speculative", action="store_true", help="start the final decode only when the utterance has ended")
    sim.add_argument("--max-partial-interval", type=float, default=None, help="ceiling of the adaptive partial interval (s); 0: no partials")
    sim.add_argument("--long-utterance", type=float, default=None, help="soft utterance limit (s) after which a 200 ms pause ends it; 0: off")
    sim.add_argument("--duration", type=float, default=None, help="stream only the first S seconds (reference rebuilt from segments.json)")
    sim.add_argument("--eagerness", choices=["low", "medium", "high", "auto"], default="auto", help="semantic turns: how soon a pause ends the turn")
    sim.add_argument("--quiet", action="store_true", help="print only the summary line")
    sim.add_argument("--status", action="store_true", help="also print status events")
    sim.add_argument("-v", "--verbose", action="store_true")
    Settings.add_arguments(
        sim,
        [
            "model",
            "engine",
            "endpoint_url",
            "hf_token",
            "remote_model",
            "device",
            "enforce_eager",
            "min_silence_ms",
            "turn_detection",
            "partial_interval_s",
            "vad_threshold",
            "language",
        ],
    )
    return parser


async def _simulate(args: argparse.Namespace) -> int:
    from engine.audio import load_audio
    from engine.base import DecodeRequest
    from engine.factory import create_engine
    from streaming.harness import simulate
    from streaming.session import SessionOptions

    settings = Settings.from_args(args)
    audio = load_audio(args.file)
    reference = Path(args.reference).read_text() if args.reference else None
    if reference is not None:
        from evaluation.text import require_scoring

        require_scoring()  # before the engine starts: a missing scorer fails at once, saying what to install
    seg_path = Path(args.segments) if args.segments else Path(args.file).with_suffix(".segments.json")
    segments = json.loads(seg_path.read_text())["segments"] if seg_path.is_file() else None

    options = SessionOptions.from_settings(settings)
    options.use_prompt = not args.no_prompt
    options.speculative_final = not args.no_speculative
    options.eagerness = args.eagerness
    if args.long_utterance is not None:
        options.long_utterance_s = args.long_utterance or None
    if args.duration is not None:
        audio = audio[: int(args.duration * SAMPLE_RATE)]
        if segments is not None:
            segments = [s for s in segments if s["end"] <= args.duration]
            if reference is not None or args.reference is None:
                reference = " ".join(s.get("text", "") for s in segments if s.get("kind", "speech") == "speech")
    if args.max_partial_interval is not None:
        options.max_partial_interval_s = args.max_partial_interval

    engine = await asyncio.to_thread(create_engine, settings)
    try:
        def on_event(stream: int, event, t: float) -> None:
            if args.quiet or (event.type == "status" and not args.status):
                return
            print(json.dumps({"stream": stream, "t": round(t, 3), **event.to_dict()}, ensure_ascii=False), flush=True)

        summary = await simulate(
            engine,
            audio,
            realtime=args.realtime,
            streams=args.streams,
            options=options,
            reference=reference,
            on_event=on_event,
            segments=segments,
            stagger_s=args.stagger,
        )
        if args.offline:
            result = await engine.transcribe(DecodeRequest(audio, language=options.language, task=options.task))
            summary["offline_text_chars"] = len(result.text)
            if reference is not None:
                from evaluation.text import wer  # only with a reference: scoring is a tool, not the product

                summary["offline_wer"] = round(wer([reference], [result.text]), 4)
        summary["model"] = engine.info.model
    finally:
        await engine.close()
    print(json.dumps({"summary": summary}, ensure_ascii=False), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    vllm_logs_to_stderr()  # before the engine imports vLLM
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    if args.command == "simulate":
        return asyncio.run(_simulate(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
