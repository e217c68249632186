"""Where a long file's time goes, and what each long-form lever buys, against faster-whisper.

`python -m bench.longform_profile [--configs baseline,...] [--words baseline,...] [--repeat N] [--mixed-s 300] [--eager] [--out JSON]`

Files: the evaluation set's long-form files (the LJ file whole, the mixed file cut in a
pause after `--mixed-s` seconds, 0 for all of it) and `unseen`: the English clips of the
sources the long-form files and the tuning never used (LibriSpeech, FLEURS, OSR, WeNet,
Picovoice), joined in a seeded order with 0.4-1.6 s pauses over a -70 dBFS floor, and
`speech between music and noise`: English clips each followed by 4-10 s of a non-speech
clip (music, noise, dishes, a whale), where a decode made to go on could invent words.

Per file and configuration of ours (`engine.longform.LongformOptions`, one engine for all,
run in the same process one after the other): RTFx, WER, speech coverage (Silero VAD
speech inside a returned segment), runs of >= 5 words faster-whisper transcribes and we
drop, and the profile: decodes per piece, tokens per decode, the coverage redos (words
before -> after), encoder seconds (vLLM's `embed_multimodal`, timed in the engine thread)
against the rest of the engine's step time, and batch fill (requests running per step /
`max_num_seqs`). Peers on the same audio in the same run: faster-whisper int8 (the same
tiny.en weights) sequential `transcribe()` with and without `word_timestamps=True`, and
its `BatchedInferencePipeline` (batch 8, its default VAD). The machine is shared: compare
ratios within one run.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SR = 16_000
#: Sources of English clips that neither long-form file holds and no setting was tuned on.
UNSEEN_SOURCES = ("librispeech_speech2text", "fleurs_cuttledoc", "osr_joinly", "wenet", "picovoice_leopard")

#: Which top-level piece a decode belongs to (asyncio tasks inherit it from the piece's task).
_piece: contextvars.ContextVar[int | None] = contextvars.ContextVar("piece", default=None)


@dataclass
class Probe:
    """Counters filled by the wrappers below while one file is transcribed."""

    decodes: list[dict] = field(default_factory=list)
    pieces: list[dict] = field(default_factory=list)
    steps: int = 0
    running: int = 0
    step_s: float = 0.0
    encoder_s: float = 0.0
    encoder_calls: int = 0

    def summary(self, max_num_seqs: int) -> dict:
        redos = [p for p in self.pieces if p["decodes"] > 1]
        tokens = [d["tokens"] for d in self.decodes]
        return {
            "pieces": len(self.pieces),
            "decodes": len(self.decodes),
            "decodes_per_piece": round(len(self.decodes) / max(1, len(self.pieces)), 2),
            "tokens_per_decode": round(float(np.mean(tokens)), 1) if tokens else 0,
            "tokens": int(sum(tokens)),
            "redo_pieces": len(redos),
            "redos": [f"{p['first_words']}->{p['words']}" for p in redos],
            "encoder_window_s": sum(d["window_s"] for d in self.decodes),
            "encoder_s": round(self.encoder_s, 2),
            "encoder_calls": self.encoder_calls,
            "rest_of_step_s": round(self.step_s - self.encoder_s, 2),
            "steps": self.steps,
            "batch_fill": round(self.running / max(1, self.steps) / max_num_seqs, 2),
        }


def instrument(engine: Any, probe_ref: list[Probe]) -> None:
    """Wrap the engine's decode, vLLM's step and the model's encoder call (bench only)."""
    from engine import longform
    from engine.coverage import word_count

    decode = engine._decode

    async def counted(request, offset, **kw):
        result, stuck, tokens = await decode(request, offset, **kw)
        window = 30.0 if kw.get("full_window") else engine._window.seconds_for(len(request.audio))
        probe_ref[0].decodes.append({"piece": _piece.get(), "offset": round(offset, 2), "seconds": round(request.duration, 2),
                                     "window_s": window,
                                     "tokens": len(tokens), "words": word_count(result.text)})
        return result, stuck, tokens

    engine._decode = counted
    covered = longform.decode_covered

    async def piece(eng, request, offset=0.0, depth=0, *args, **kw):
        if depth > 0 or _piece.get() is not None:
            return await covered(eng, request, offset, depth, *args, **kw)
        probe = probe_ref[0]
        index = len(probe.pieces)
        _piece.set(index)
        probe.pieces.append({"offset": round(offset, 2), "seconds": round(request.duration, 2)})
        result = await covered(eng, request, offset, depth, *args, **kw)
        mine = [d for d in probe.decodes if d["piece"] == index]
        probe.pieces[index].update(decodes=len(mine), first_words=mine[0]["words"] if mine else 0, words=word_count(result.text))
        return result

    longform.decode_covered = piece
    llm = engine._runner._engine
    core = llm.engine_core.engine_core
    step = llm.step

    def timed_step():
        probe = probe_ref[0]
        probe.steps += 1
        probe.running += len(core.scheduler.running)
        t0 = time.perf_counter()
        try:
            return step()
        finally:
            probe.step_s += time.perf_counter() - t0

    llm.step = timed_step
    model = core.model_executor.driver_worker.worker.model_runner.model
    embed = model.embed_multimodal

    def timed_embed(**kw):
        t0 = time.perf_counter()
        try:
            return embed(**kw)
        finally:
            probe_ref[0].encoder_s += time.perf_counter() - t0
            probe_ref[0].encoder_calls += 1

    model.embed_multimodal = timed_embed


def unseen_file(seed: int = 21) -> tuple[np.ndarray, str]:
    """The untuned sources' English clips joined with natural pauses: (audio, reference)."""
    audio, sentences = unseen_sentences(seed)
    return audio, " ".join(sentences)


def unseen_sentences(seed: int = 21) -> tuple[np.ndarray, list[str]]:
    """The untuned file and each of its clips' texts, in the file's order."""
    from evaluation.evalset import clips, read_audio

    rng = np.random.default_rng(seed)
    chosen = [c for c in clips(kind="speech", lang="en") if c.path.stem.split("__", 1)[0] in UNSEEN_SOURCES]
    order = rng.permutation(len(chosen))
    parts, texts = [], []
    for i in order:
        clip = chosen[int(i)]
        pause = rng.uniform(0.4, 1.6)
        parts.append((rng.standard_normal(int(pause * SR)) * 10 ** (-70 / 20)).astype(np.float32))
        parts.append(read_audio(clip.path))
        texts.append(clip.text)
    parts.append(np.zeros(SR // 2, np.float32))
    return np.concatenate(parts), texts


def noise_file(seed: int = 5) -> tuple[np.ndarray, str]:
    """English clips each followed by 4-10 s of a non-speech clip (music, noise, dishes, a
    whale) at a random level: where a decode made to go on to a window's last sound
    (`LongformOptions.keep_decoding`) could put words on music or noise."""
    from evaluation.evalset import clips, read_audio

    rng = np.random.default_rng(seed)
    speech = clips(kind="speech", lang="en")
    rng.shuffle(speech)
    noises = [c for c in clips(kind="nonspeech") if "silence" not in c.path.name]
    pause = np.zeros(int(0.7 * SR), np.float32)
    parts, texts = [], []
    for clip, noise in zip(speech, noises):
        parts += [read_audio(clip.path), pause]
        texts.append(clip.text)
        sound = read_audio(noise.path)[: int(rng.uniform(4, 10) * SR)]
        parts += [sound * np.float32(rng.uniform(0.2, 1.0)), pause]
    return np.concatenate(parts).astype(np.float32), " ".join(texts)


def files(mixed_s: float) -> list[tuple[str, np.ndarray, str]]:
    from bench.__main__ import _excerpt
    from evaluation.evalset import longform_files, read_audio

    out = []
    for lf in longform_files():
        audio, ref, name = read_audio(lf.path), lf.text, lf.path.stem
        if mixed_s and lf.duration > mixed_s + 30:
            cut, _, ref = _excerpt(lf, mixed_s)
            audio, name = audio[: int(cut * SR)], f"{name} (first {cut:.0f} s)"
        out.append((name, audio, ref))
    audio, ref = unseen_file()
    out.append(("unseen (untuned sources)", audio, ref))
    audio, ref = noise_file()
    out.append(("speech between music and noise", audio, ref))
    return out


def ours_runs(eng: Any, configs: str, words: str) -> dict:
    """name -> a function that transcribes a file with that long-form variant and profiles it."""
    from engine.base import DecodeRequest
    from engine.longform import LongformOptions, transcribe_long

    probe_ref = [Probe()]
    instrument(eng.engine, probe_ref)
    max_seqs = eng.engine.options.max_num_seqs

    def runner(options: Any, word_times: bool) -> Any:
        def go(audio: np.ndarray) -> dict:
            probe_ref[0] = Probe()
            if word_times:
                # A copy scaled by 1e-4 (the same words): vLLM's own caches would serve the
                # file the run without word times just decoded, no encoder would run, and
                # the aligner would find no encoder output to reuse (a file is transcribed
                # once in use).
                audio = audio * np.float32(1.0 + 1e-4)
            request = eng.engine._checked(DecodeRequest(audio, language="en", word_timestamps=word_times))
            t0, cpu0 = time.perf_counter(), time.process_time()
            result = eng.run(transcribe_long(eng.engine, request, options=options))
            seconds = time.perf_counter() - t0
            return {"seconds": round(seconds, 2), "cpu_s": round(time.process_time() - cpu0, 2), "text": result.text,
                    "profile": probe_ref[0].summary(max_seqs),
                    "segments": [(s.start, s.end, s.text, s.kind) for s in result.segments]}

        return go

    runs = {}
    for name in configs.split(","):
        runs[name] = runner(LongformOptions.named(name), False)
    for name in filter(None, words.split(",")):
        runs[name + " +word times"] = runner(LongformOptions.named(name), True)
    return runs


def fw_runs(words: bool) -> dict:
    """faster-whisper int8 on the same weights: sequential, sequential with word times, batched."""
    from faster_whisper import BatchedInferencePipeline

    from bench.peers import FasterWhisper

    fw = FasterWhisper("tiny.en", "int8")
    batched = BatchedInferencePipeline(fw.model)

    def timed(go: Any) -> Any:
        def run(audio: np.ndarray) -> dict:
            t0, cpu0 = time.perf_counter(), time.process_time()
            segments, _ = go(audio)
            segs = [(s.start, s.end, s.text.strip(), "speech") for s in segments]
            return {"seconds": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - cpu0, 2),
                    "text": " ".join(s[2] for s in segs), "segments": segs}

        return run

    runs = {"fw-sequential": timed(lambda a: fw.model.transcribe(a, **fw._opts())),
            "fw-batched-8": timed(lambda a: batched.transcribe(a, beam_size=1, language="en", batch_size=8))}
    if words:
        runs["fw-sequential +word times"] = timed(lambda a: fw.model.transcribe(a, **fw._opts(), word_timestamps=True))
    return runs


def run_all(data: list, configs: str, eager: bool, words: str, peers: bool, repeat: int = 1) -> dict:
    """Every file through every run, file by file, so the runs of one file share the machine's
    load of the same minutes (it is shared: ratios within a file are what to compare)."""
    from bench.peers import Ours

    eng = Ours("tiny.en", eager=eager)
    try:
        eng.one(data[0][1][: 8 * SR])  # warm-up
        runs = ours_runs(eng, configs, words)
        if peers:
            runs.update(fw_runs(bool(words)))
        out: dict = {name: [] for name in runs}
        for file, audio, _ in data:
            for name, go in runs.items():
                out[name].append({"file": file, "all_seconds": []})
            for _ in range(repeat):  # rounds: each run of a file once, then again; the fastest counts
                for name, go in runs.items():
                    row = {"file": file, **go(audio)}
                    print(json.dumps({"config": name, **{k: v for k, v in row.items() if k not in ("text", "segments")}}), flush=True)
                    best = out[name][-1]
                    row["all_seconds"] = [*best["all_seconds"], row["seconds"]]
                    if "seconds" not in best or row["seconds"] < best["seconds"]:
                        out[name][-1] = row
                    else:
                        best["all_seconds"] = row["all_seconds"]
    finally:
        eng.close()
    return out


def score(data: list, runs: dict) -> list[dict]:
    """One row per (configuration, file, word times): RTFx, WER, coverage, dropped runs, ratios."""
    from bench.coverage import dropped_runs, speech_coverage
    from engine.base import Segment
    from engine.coverage import uncovered
    from engine.vad import speech_regions
    from evaluation.text import wer

    fw = {r["file"]: r for r in runs["fw-sequential"]}
    table = []
    for config, rows in runs.items():
        for row in rows:
            index = [d[0] for d in data].index(row["file"])
            _, audio, ref = data[index]
            segs = [Segment(a, b, t, k) for a, b, t, k in row["segments"]]
            rtfx = len(audio) / SR / row["seconds"]
            entry = {"config": config, "file": row["file"],
                     "duration_s": round(len(audio) / SR, 1), "rtfx": round(rtfx, 1),
                     "wer": round(wer([ref], [row["text"]]), 4), "coverage": round(speech_coverage(audio, segs), 4),
                     "gaps": sum(1 for s in segs if s.kind == "gap"), "all_seconds": row.get("all_seconds"),
                     "cpu_s": row.get("cpu_s")}
            if entry["coverage"] < 1.0:
                entry["uncovered"] = uncovered(speech_regions(audio), segs, collar=0.5, min_s=0.05)
                entry["uncovered"] = [(round(a, 2), round(b, 2)) for a, b in entry["uncovered"]]
            if not config.startswith("fw"):
                entry["dropped_runs"] = dropped_runs(ref, row["text"], fw[row["file"]]["text"])
                entry["profile"] = row["profile"]
            table.append(entry)
    for entry in table:  # RTFx over faster-whisper sequential on the same file, same run
        base = next(e for e in table if e["config"] == "fw-sequential" and e["file"] == entry["file"])
        entry["rtfx_over_fw_seq"] = round(entry["rtfx"] / base["rtfx"], 2)
        if entry["cpu_s"] and base["cpu_s"]:  # CPU seconds: less moved by other work on the machine than wall time
            entry["cpu_fw_seq_over_ours"] = round(base["cpu_s"] / entry["cpu_s"], 2)
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.longform_profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="baseline", help="comma-separated LongformOptions names (engine.longform)")
    p.add_argument("--mixed-s", type=float, default=300.0, help="cut the mixed file in a pause after this many s (0: whole)")
    p.add_argument("--eager", action="store_true", help="our engine without torch.compile")
    p.add_argument("--words", default="", help="these configurations also with word times (and faster-whisper's)")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--only", default="", help="only the files whose name holds this")
    p.add_argument("--repeat", type=int, default=1, help="rounds per file; the fastest of each run counts (shared machine)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "longform_profile.json")
    args = p.parse_args(argv)
    data = [f for f in files(args.mixed_s) if args.only in f[0]]
    started = time.time()
    runs = run_all(data, args.configs, args.eager, args.words, not args.no_peers, args.repeat)
    if args.no_peers:
        runs["fw-sequential"] = [{"file": f, "seconds": 1.0, "text": "", "segments": []} for f, _, _ in data]
    table = score(data, runs)
    for entry in table:
        print(json.dumps(entry), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
                                    "took_s": round(time.time() - started), "table": table}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
