"""Live speakers through the real stream (issue 19): DER, speaker count and the share of
words given to the right speaker, from the finals a stream actually emits.

`bench.speakers --live` scores the speaker step alone on the VAD's utterances, quickly.
This runs the same constructed conversations (bench.speakers: 2-4 voices, turns of 1-15 s,
0.3-1 s apart; and one-voice recordings) through `streaming.session.Session` on the real
engine with `LIVE_SPEAKERS` (the segmenter, the decodes, the voice encoder, the labels as
shown), in two modes:

- `words`: `LIVE_WORD_TIMES` on too, so a final holding two voices is cut at its words.
  The hypothesis is each word's time with its speaker; a word is "right" when its speaker
  maps (best one-to-one mapping by words) to the reference voice at its middle.
- `finals`: word times off; each final's span, cut to where the VAD heard speech, carries
  its one label.

The stream runs as fast as the engine allows (`streaming.harness.simulate`,
realtime=False): a final's label does not depend on the clock (labels are given in
utterance order), and 35 minutes of conversations would take 35 minutes in real time.
Speaker labels never change a final's text (they are added after the decode), so WER is
the stream's own; `bench.turns` measures that.

    python -m bench.speakers_stream --conversations 8 --one-voice 4 --out bench/results/speakers_stream.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.speakers import Conversation, _cut_to, conversations, one_voice
from engine.base import SAMPLE_RATE
from engine.speakers.diarize import Turn

MODES = ("words", "finals")


def hypothesis(finals: list, mode: str, speech: list[tuple[float, float]]) -> list[tuple[float, float, str]]:
    """(start, end, speaker) the stream said: words with their speakers, or finals cut to speech."""
    if mode == "words":
        return [(w.start, w.end, w.speaker or f.speaker) for f in finals for w in f.words if (w.speaker or f.speaker)]
    return _cut_to([Turn(f.start_s, f.end_s, f.speaker) for f in finals if f.speaker], speech)


def words_right(finals: list, turns: list[tuple[float, float, str]]) -> tuple[int, int]:
    """(words given the right speaker, words inside a reference turn), after the best
    one-to-one mapping of labels to voices by word count."""
    pairs = []
    for f in finals:
        for w in f.words:
            middle = (w.start + w.end) / 2
            truth = next((who for a, b, who in turns if a <= middle <= b), None)
            if truth is not None:
                pairs.append((w.speaker or f.speaker, truth))
    if not pairs:
        return 0, 0
    hyps = sorted({h for h, _ in pairs if h})
    refs = sorted({r for _, r in pairs})
    counts = np.zeros((len(hyps), len(refs)))
    for h, r in pairs:
        if h:
            counts[hyps.index(h), refs.index(r)] += 1
    rows, cols = linear_sum_assignment(-counts)
    return int(counts[rows, cols].sum()), len(pairs)


async def run_one(engine, conv: Conversation, mode: str) -> dict:
    from engine.vad import speech_regions
    from evaluation.der import der
    from streaming.harness import simulate
    from streaming.options import SessionOptions

    finals: list = []

    def keep(_index: int, event, _t: float) -> None:
        if getattr(event, "type", None) == "final" and event.text.strip():
            finals.append(event)

    options = SessionOptions(language="en", speakers=True, word_times=(mode == "words"))
    t = time.perf_counter()
    summary = await simulate(engine, conv.audio, realtime=False, options=options, on_event=keep, warmup=False)
    wall = time.perf_counter() - t
    speech = speech_regions(conv.audio)
    hyp = hypothesis(finals, mode, speech)
    score = der(conv.turns, hyp, collar=0.25)
    right, counted = words_right(finals, conv.turns) if mode == "words" else (0, 0)
    labels = {s for _, _, s in hyp}
    return {
        "mode": mode,
        "speakers": len({who for _, _, who in conv.turns}),
        "found": len(labels),
        "der": round(score.der, 4), "missed": round(score.missed, 4),
        "false_alarm": round(score.false_alarm, 4), "confusion": round(score.confusion, 4),
        "words": counted, "words_right": right,
        "finals": len(finals),
        "finals_two_voices": sum(1 for f in finals if len({w.speaker for w in f.words if w.speaker}) > 1),
        "errors": summary.get("errors"),
        "audio_s": round(len(conv.audio) / SAMPLE_RATE, 1), "wall_s": round(wall, 1),
    }


def aggregate(rows: list[dict], single: list[dict]) -> dict:
    out = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        ones = [r for r in single if r["mode"] == mode]
        if not mine and not ones:
            continue
        words = sum(r["words"] for r in mine)
        out[mode] = {
            "der_mean": round(float(np.mean([r["der"] for r in mine])), 4) if mine else None,
            "der_median": round(float(np.median([r["der"] for r in mine])), 4) if mine else None,
            "confusion": round(float(np.mean([r["confusion"] for r in mine])), 4) if mine else None,
            "missed": round(float(np.mean([r["missed"] for r in mine])), 4) if mine else None,
            "false_alarm": round(float(np.mean([r["false_alarm"] for r in mine])), 4) if mine else None,
            "count_right": round(float(np.mean([r["found"] == r["speakers"] for r in mine])), 3) if mine else None,
            "words_right_share": round(sum(r["words_right"] for r in mine) / words, 4) if words else None,
            "finals_two_voices": sum(r["finals_two_voices"] for r in mine),
            "finals": sum(r["finals"] for r in mine),
            "one_voice_as_one": round(float(np.mean([r["found"] == 1 for r in ones])), 3) if ones else None,
            "errors": sum(r["errors"] or 0 for r in mine + ones),
        }
    return out


async def main_async(args: argparse.Namespace) -> dict:
    from engine.factory import create_engine
    from settings import Settings

    convs = conversations(args.conversations, args.seed)
    ones = one_voice(args.one_voice, args.seed)
    settings = Settings.from_env()
    settings.engine = "vllm"
    settings.model = args.model
    engine = await asyncio.to_thread(create_engine, settings)
    modes = args.modes.split(",")
    rows, single = [], []
    try:
        for i, conv in enumerate(convs + ones):
            for mode in modes:
                row = await run_one(engine, conv, mode)
                (rows if i < len(convs) else single).append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        await engine.close()
    return {
        "conversations": len(convs), "one_voice_recordings": len(ones), "seed": args.seed,
        "audio_min": round(sum(len(c.audio) for c in convs + ones) / SAMPLE_RATE / 60, 1),
        "by_mode": aggregate(rows, single), "rows": rows + single,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speakers_stream", description=__doc__.splitlines()[0])
    p.add_argument("--conversations", type=int, default=8)
    p.add_argument("--one-voice", type=int, default=4)
    p.add_argument("--seed", type=int, default=19, help="the same seed as bench.speakers gives the same conversations")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--model", default="embedded:tiny.en")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    result = asyncio.run(main_async(args))
    text = json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
