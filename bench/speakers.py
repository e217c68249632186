"""Speakers bench: diarization error rate of constructed conversations (issue 19).

Conversations are built from the evaluation set's voices that have several clips each
(LJSpeech's reader, Asterisk's prompt voice, two SpeechBrain speakers, two CMU Arctic
speakers, a LibriSpeech reader, a LibriVox reader of Austen): 2-4 speakers, alternating
turns of 1-15 s (a third of them quick, 1-2.5 s), 0.3-1 s between turns, seeded. Each
turn's speech is the voice's clips trimmed of silence and joined; the reference (who
spoke when) is the construction itself. One-voice recordings (5-8 turns of one voice)
check that one speaker stays one.

The diarizer sees what the file path gives it: the audio and where speech is. Here the
speech comes from the VAD (engine/vad.py) rather than from Whisper's words, so the bench
measures the speaker step alone, quickly; its hypothesis turns are cut to that speech.
Scored: DER (collar 0.25 s, evaluation/der.py), whether the number of speakers is right,
one-voice recordings labelled as one, and the cost in seconds per audio minute (windows'
embeddings and clustering: wall time on a shared machine, and CPU time), each for every
`--thresholds` and `--min-speaker` pair (embeddings computed once per recording), and
for every `--encoder` (SPEAKER_ENCODER values, scored in the same run on the same
recordings; a hub model needs the network the first time).

    python -m bench.speakers --conversations 24 --out bench/results/speakers.json
    python -m bench.speakers --encoder resemblyzer,hub:Wespeaker/wespeaker-voxceleb-resnet34-LM/voxceleb_resnet34_LM.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.base import SAMPLE_RATE

#: Voices with several clips in the evaluation set: name -> clip-name prefixes.
VOICES = {
    "ljspeech": ("ljspeech_coqui__", "speechbrain__LJ"),
    "asterisk": ("asterisk_en__",),
    "sb_spk1": ("speechbrain__spk1",),
    "sb_spk2": ("speechbrain__spk2",),
    "arctic_aew": ("cmu_arctic__cmu_arctic_us_aew",),
    "arctic_axb": ("cmu_arctic__cmu_arctic_us_axb",),
    "libri_1089": ("librispeech_speech2text__1089",),
    "austen": ("pocketsphinx__sense_and_sensibility",),
}


@dataclass
class Conversation:
    audio: np.ndarray
    #: (start, end, speaker) of each stretch of speech, in seconds.
    turns: list[tuple[float, float, str]]

    @property
    def speakers(self) -> int:
        return len({s for _, _, s in self.turns})

    @property
    def minutes(self) -> float:
        return len(self.audio) / SAMPLE_RATE / 60


def _trim(audio: np.ndarray, hop: int = 160) -> np.ndarray:
    """The clip from its first to its last 10 ms frame within 35 dB of its loudest."""
    n = len(audio) // hop
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(rms > rms.max() * 10 ** (-35 / 20))[0]
    return audio[loud[0] * hop : (loud[-1] + 1) * hop]


def voice_clips() -> dict[str, list[np.ndarray]]:
    """Each voice's trimmed clips (the evaluation set, `EVAL_DIR` or ../shared/eval)."""
    from evaluation.evalset import clips, read_audio

    out: dict[str, list[np.ndarray]] = defaultdict(list)
    for clip in clips(kind="speech"):
        for voice, prefixes in VOICES.items():
            if clip.path.name.startswith(prefixes):
                out[voice].append(_trim(read_audio(clip.path)))
    return dict(out)


def _turn_audio(rng: np.random.Generator, pool: list[np.ndarray], seconds: float) -> np.ndarray:
    """`seconds` of one voice: its clips in random order, joined by 0.15 s, cut to length."""
    parts, total = [], 0
    need = int(seconds * SAMPLE_RATE)
    while total < need:
        clip = pool[int(rng.integers(len(pool)))]
        if parts:
            parts.append(np.zeros(int(0.15 * SAMPLE_RATE), np.float32))
        parts.append(clip)
        total += len(clip) + (int(0.15 * SAMPLE_RATE) if len(parts) > 1 else 0)
    return np.concatenate(parts)[:need]


def build(rng: np.random.Generator, voices: dict[str, list[np.ndarray]], speakers: int, turns: int) -> Conversation:
    """One conversation of `speakers` voices taking `turns` turns, never the same voice twice in a row."""
    names = [str(n) for n in rng.choice(sorted(voices), size=speakers, replace=False)]
    noise = lambda s: rng.normal(0, 3e-4, int(s * SAMPLE_RATE)).astype(np.float32)
    parts = [noise(0.5)]
    t = 0.5
    out: list[tuple[float, float, str]] = []
    order = list(names)  # everyone speaks once before voices repeat at random
    previous = None
    for i in range(turns):
        if i < len(order):
            voice = order[i]
        else:
            voice = str(rng.choice([n for n in names if n != previous] or names))
        seconds = float(rng.uniform(1.0, 2.5)) if rng.random() < 1 / 3 else float(rng.uniform(2.5, 15.0))
        audio = _turn_audio(rng, voices[voice], seconds)
        out.append((t, t + len(audio) / SAMPLE_RATE, voice))
        parts.append(audio)
        t += len(audio) / SAMPLE_RATE
        gap = float(rng.uniform(0.3, 1.0))
        parts.append(noise(gap))
        t += gap
        previous = voice
    parts.append(noise(0.5))
    return Conversation(np.concatenate(parts), out)


def conversations(count: int, seed: int) -> list[Conversation]:
    """`count` conversations of 2-4 speakers (8-16 turns), seeded."""
    rng = np.random.default_rng(seed)
    voices = voice_clips()
    return [build(rng, voices, int(rng.integers(2, 5)), int(rng.integers(8, 17))) for _ in range(count)]


def one_voice(count: int, seed: int) -> list[Conversation]:
    """`count` recordings of one voice (5-8 turns, each voice in turn)."""
    rng = np.random.default_rng(seed + 1)
    voices = voice_clips()
    names = sorted(voices)
    return [build(rng, {names[i % len(names)]: voices[names[i % len(names)]]}, 1, int(rng.integers(5, 9))) for i in range(count)]


def _cut_to(turns, spans):
    """Hypothesis turns cut to the speech spans (silence inside a turn is nobody's)."""
    out = []
    for t in turns:
        for start, end in spans:
            lo, hi = max(t.start, start), min(t.end, end)
            if hi > lo:
                out.append((lo, hi, t.speaker))
    return out


def score(conv: Conversation, encoder, thresholds: list[float]) -> list[dict]:
    """Each threshold's DER, speaker count and cost on one conversation."""
    from engine.speakers.diarize import HOP_S, speaker_turns
    from engine.vad import speech_regions
    from evaluation.der import der

    spans = speech_regions(conv.audio)
    t, cpu = time.perf_counter(), time.process_time()
    windows = encoder.windows(conv.audio, HOP_S)
    embed_s, embed_cpu = time.perf_counter() - t, time.process_time() - cpu
    rows = []
    for threshold, min_speaker_s in thresholds:
        t, cpu = time.perf_counter(), time.process_time()
        turns = speaker_turns(windows, spans, threshold=threshold, min_speaker_s=min_speaker_s)
        cluster_s, cluster_cpu = time.perf_counter() - t, time.process_time() - cpu
        hyp = _cut_to(turns, spans)
        result = der(conv.turns, hyp, collar=0.25)
        rows.append({
            "threshold": f"{threshold}/{min_speaker_s}",
            "der": result.der, "missed": result.missed, "false_alarm": result.false_alarm, "confusion": result.confusion,
            "speakers": conv.speakers, "found": len({s for _, _, s in hyp}),
            "cost_s_per_min": (embed_s + cluster_s) / conv.minutes,
            "cpu_s_per_min": (embed_cpu + cluster_cpu) / conv.minutes,
        })
    return rows


def score_live(conv: Conversation, encoder, settings: list[tuple[float, float]]) -> list[dict]:
    """Live labels as a stream gives them: utterances cut at 0.5 s of silence (the VAD, as
    the live segmenter with MIN_SILENCE_MS=500), each embedded and labelled in order
    (`StableSpeakers`, as `streaming.speakers`), a label never changed; each setting twice:
    one label per utterance (`assign`, live without word times) and one per window
    (`assign_windows`, "split": with LIVE_WORD_TIMES a final holding two voices is cut at
    its words; here the cut is where the windows change, the words' snap is not
    simulated). No Whisper: the speaker step alone; the cost includes the re-clustering at
    every utterance."""
    from engine.speakers.cluster import StableSpeakers
    from engine.speakers.diarize import window_turns
    from engine.vad import speech_regions
    from evaluation.der import der
    from streaming.speakers import HOP_S

    utterances = speech_regions(conv.audio, min_silence_s=0.5)
    t, cpu = time.perf_counter(), time.process_time()
    windows = [encoder.windows(conv.audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)], HOP_S) for a, b in utterances]
    embed_s, embed_cpu = time.perf_counter() - t, time.process_time() - cpu
    rows = []
    for threshold, min_speaker_s in settings:
        for split in (False, True):
            online = StableSpeakers(threshold, min_speaker_s, HOP_S)
            t, cpu = time.perf_counter(), time.process_time()
            hyp = []
            for (a, b), w in zip(utterances, windows):
                if not split:
                    hyp.append((a, b, str(online.assign(w.embeddings))))
                    continue
                labels = [str(x) for x in online.assign_windows(w.embeddings)]
                for turn in window_turns(w.centers, labels):
                    lo, hi = a + turn.start, min(b, a + turn.end)
                    if hi > lo:
                        hyp.append((lo, hi, turn.speaker))
            wall, used = time.perf_counter() - t, time.process_time() - cpu
            result = der(conv.turns, hyp, collar=0.25)
            rows.append({
                "threshold": f"live {threshold}/{min_speaker_s}{' split' if split else ''}",
                "der": result.der, "missed": result.missed, "false_alarm": result.false_alarm, "confusion": result.confusion,
                "speakers": conv.speakers, "found": online.count,
                "cost_s_per_min": (embed_s + wall) / conv.minutes, "cpu_s_per_min": (embed_cpu + used) / conv.minutes,
            })
    return rows


def aggregate(rows: list[dict], single: list[dict]) -> dict:
    """Per threshold: mean and pooled figures over the conversations and one-voice recordings."""
    out = {}
    for threshold in sorted({r["threshold"] for r in rows}):
        mine = [r for r in rows if r["threshold"] == threshold]
        ones = [r for r in single if r["threshold"] == threshold]
        out[threshold] = {
            "der_mean": round(float(np.mean([r["der"] for r in mine])), 4),
            "der_median": round(float(np.median([r["der"] for r in mine])), 4),
            "missed": round(float(np.mean([r["missed"] for r in mine])), 4),
            "false_alarm": round(float(np.mean([r["false_alarm"] for r in mine])), 4),
            "confusion": round(float(np.mean([r["confusion"] for r in mine])), 4),
            "count_right": round(float(np.mean([r["found"] == r["speakers"] for r in mine])), 3),
            "count_off": dict(sorted(((str(k), v) for k, v in _counts([r["found"] - r["speakers"] for r in mine]).items()))),
            "one_voice_as_one": round(float(np.mean([r["found"] == 1 for r in ones])), 3) if ones else None,
            "wall_s_per_audio_min": round(float(np.mean([r["cost_s_per_min"] for r in mine + ones])), 3),
            "cpu_s_per_audio_min": round(float(np.mean([r["cpu_s_per_min"] for r in mine + ones])), 3),
        }
    return out


def _counts(values: list[int]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for v in values:
        counts[v] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speakers", description=__doc__.splitlines()[0])
    p.add_argument("--conversations", type=int, default=24)
    p.add_argument("--one-voice", type=int, default=16, help="one-voice recordings")
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--encoder", default="resemblyzer", help="comma-separated SPEAKER_ENCODER values to compare (resemblyzer, hub:<repo_id>[/<file>.onnx])")
    p.add_argument("--thresholds", default="", help="comma-separated cosine-distance thresholds (default: each encoder's own, engine/speakers/choice.py)")
    p.add_argument("--min-speaker", default="3.0", help="comma-separated MIN_SPEAKER_S values (seconds)")
    p.add_argument("--live", default="", help="comma-separated live thresholds to score too (streaming.speakers), with each --live-min-speaker")
    p.add_argument("--live-min-speaker", default="1.2", help="comma-separated LIVE_MIN_SPEAKER_S values (seconds)")
    p.add_argument("--files", action=argparse.BooleanOptionalAction, default=True, help="score the file path")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the app leaves torch's own setting)")
    p.add_argument("--out", default=None, help="JSON file for the aggregate results")
    args = p.parse_args(argv)
    import torch

    from engine.speakers.choice import load_encoder, thresholds_for
    from engine.speakers.encoder import EncoderMissing

    torch.set_num_threads(args.threads)
    try:
        encoders = {spec: load_encoder(spec) for spec in args.encoder.split(",")}
    except EncoderMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    convs = conversations(args.conversations, args.seed)
    singles = one_voice(args.one_voice, args.seed)
    started = time.perf_counter()
    live = [(float(x), float(m)) for x in args.live.split(",") if x for m in args.live_min_speaker.split(",")]
    by_encoder = {}
    for spec, encoder in encoders.items():
        cuts = [float(x) for x in args.thresholds.split(",") if x] or [thresholds_for(encoder).file]
        thresholds = [(x, float(m)) for x in cuts for m in args.min_speaker.split(",")]
        rows = [r for c in convs for r in score(c, encoder, thresholds)] if args.files else []
        single = [r for c in singles for r in score(c, encoder, thresholds)] if args.files else []
        if live:
            rows += [r for c in convs for r in score_live(c, encoder, live)]
            single += [r for c in singles for r in score_live(c, encoder, live)]
        by_encoder[spec] = aggregate(rows, single)
    result = {
        "conversations": len(convs),
        "speakers": dict(sorted(((str(k), v) for k, v in _counts([c.speakers for c in convs]).items()))),
        "audio_min": round(sum(c.minutes for c in convs), 1),
        "one_voice_recordings": len(singles),
        "seed": args.seed,
        "wall_s": round(time.perf_counter() - started, 1),
        **({"by_threshold": by_encoder[args.encoder]} if len(by_encoder) == 1 else {"by_encoder": by_encoder}),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
