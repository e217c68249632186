"""The in-process vLLM engine on CPU with the embedded tiny.en model: accuracy, long-form, concurrency."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import numpy as np
import pytest

from tests.datasets import TEST_DATA, require_eval_set
from evaluation import longform_files, normalize, read_audio, wer
from engine.base import SAMPLE_RATE, AudioError, DecodeRequest

JFK = "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


async def test_jfk_clip(engine, english_clips):
    clip = next(c for c in english_clips if "jfk" in c.name)
    result = await engine.transcribe(DecodeRequest(read_audio(clip.path)))
    assert normalize(result.text) == normalize(JFK)
    assert result.language == "en"
    assert result.duration == pytest.approx(11.0, abs=0.01)
    assert result.avg_logprob is not None and result.avg_logprob > -0.5


async def test_engine_busy_time_counts_work_and_not_idle(engine, english_clips):
    """The runner's busy seconds (the bench's `engine_busy`): they grow with a decode, by
    no more than its wall time, and not while the engine waits for requests."""
    import time

    clip = next(c for c in english_clips if "jfk" in c.name)
    before, t0 = engine._runner.busy_s, time.perf_counter()
    await engine.transcribe(DecodeRequest(read_audio(clip.path)))
    spent, wall = engine._runner.busy_s - before, time.perf_counter() - t0
    assert 0 < spent <= wall
    idle_start = engine._runner.busy_s
    await asyncio.sleep(0.5)
    assert engine._runner.busy_s - idle_start < 0.05


@pytest.fixture(scope="module")
def faster_whisper_tiny_en():
    from faster_whisper import WhisperModel

    from engine.convert import tiny_en_ct2_dir

    return WhisperModel(str(tiny_en_ct2_dir()), device="cpu", compute_type="default", cpu_threads=2)


async def test_wer_no_worse_than_faster_whisper(eval_english_clips, engine, faster_whisper_tiny_en):
    english_clips = eval_english_clips  # 175 clips: a ratio of WERs needs many words
    """Same weights, same greedy decoding: our WER ≤ faster-whisper's + 10 % relative."""
    audios = [read_audio(c.path) for c in english_clips]
    ours = await asyncio.gather(*(engine.transcribe(DecodeRequest(a)) for a in audios))
    theirs = []
    for audio in audios:
        segments, _ = faster_whisper_tiny_en.transcribe(
            audio, language="en", beam_size=1, without_timestamps=True, condition_on_previous_text=False, vad_filter=False
        )
        theirs.append(" ".join(s.text.strip() for s in segments))
    refs = [c.text for c in english_clips]
    our_wer, their_wer = wer(refs, [r.text for r in ours]), wer(refs, theirs)
    print(f"WER on {len(refs)} English clips: vLLM {our_wer:.4f}, faster-whisper {their_wer:.4f}")
    assert our_wer <= their_wer * 1.10 + 1e-9
    assert our_wer < 0.25  # tiny.en on these clips is far better than this; catches a broken engine


def _repeated_ngrams(text: str, n: int = 5) -> int:
    words = normalize(text).split()
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return sum(c - 1 for c in grams.values() if c > 1)


async def test_longform_whole_file(engine):
    """A 3.9-minute file in one call: cut at pauses, decoded concurrently, joined cleanly."""
    lf = next(f for f in longform_files(require_eval_set()) if f.path.name.startswith("ljspeech"))
    audio = read_audio(lf.path)
    progress: list[tuple[float, float]] = []
    result = await engine.transcribe(DecodeRequest(audio, progress=lambda d, t: progress.append((d, t))))
    whole_wer = wer([lf.text], [result.text])
    clip_texts = [s["text"] for s in lf.segments if s["kind"] == "speech"]
    clip_results = await asyncio.gather(
        *(
            engine.transcribe(DecodeRequest(audio[int(s["start"] * SAMPLE_RATE) : int(s["end"] * SAMPLE_RATE)]))
            for s in lf.segments
            if s["kind"] == "speech"
        )
    )
    clip_wer = wer([" ".join(clip_texts)], [" ".join(r.text for r in clip_results)])
    print(f"long-form WER {whole_wer:.4f} vs per-clip {clip_wer:.4f}, {len(result.segments)} segments")
    assert whole_wer <= clip_wer + 0.03
    # Nothing repeated at the joins beyond what the reference itself repeats.
    assert _repeated_ngrams(result.text) <= _repeated_ngrams(lf.text)
    # Segments are in order, inside the audio, and cover the speech.
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    assert result.segments[-1].end <= result.duration + 0.01
    assert result.segments[0].start < 1.0 and result.segments[-1].end > result.duration - 15
    assert progress[-1] == (pytest.approx(result.duration), pytest.approx(result.duration))


async def test_concurrent_requests_match_sequential(engine, english_clips):
    picked = sorted(english_clips, key=lambda c: -c.duration)[:8]
    audios = [read_audio(c.path) for c in picked]
    sequential = [(await engine.transcribe(DecodeRequest(a))).text for a in audios]
    concurrent = [r.text for r in await asyncio.gather(*(engine.transcribe(DecodeRequest(a)) for a in audios))]
    assert concurrent == sequential


async def test_urgent_request_overtakes_waiting_background_ones(engine, english_clips):
    """A live final (priority 0) does not queue behind partials of other streams (priority 1).

    vLLM runs one encoder pass per step here, so the waiting queue's order decides who
    waits; with first-come-first-served the late urgent request would finish last.
    """
    from engine.base import PRIORITY_BACKGROUND

    audio = read_audio(next(c for c in english_clips if "jfk" in c.name).path)
    done: list[str] = []

    async def run(name: str, priority: int, delay: float) -> None:
        await asyncio.sleep(delay)
        await engine.transcribe(DecodeRequest(audio, priority=priority))
        done.append(name)

    await asyncio.gather(
        *(run(f"background{i}", PRIORITY_BACKGROUND, 0.0) for i in range(6)),
        run("urgent", 0, 0.05),
    )
    assert done.index("urgent") <= 2, done


async def test_stream_deltas_join_to_full_text(engine, english_clips):
    clip = next(c for c in english_clips if "jfk" in c.name)
    audio = read_audio(clip.path)
    deltas = [d async for d in engine.transcribe_stream(DecodeRequest(audio))]
    assert len(deltas) > 3  # arrives token by token, not at the end
    assert "".join(deltas).strip() == (await engine.transcribe(DecodeRequest(audio))).text


async def test_english_only_model_refuses_translate_and_other_languages(engine):
    audio = np.zeros(SAMPLE_RATE, dtype=np.float32)
    with pytest.raises(ValueError, match="English-only"):
        await engine.transcribe(DecodeRequest(audio, task="translate"))
    with pytest.raises(ValueError, match="English-only"):
        await engine.transcribe(DecodeRequest(audio, language="de"))


async def test_prompt_is_sent_as_previous_text(engine, english_clips):
    """A prompt goes in as <|startofprev|> text before the task tokens and keeps the transcript intact."""
    decoder = engine.vocab.decoder_prompt(language="en", task="transcribe", prompt="Inaugural address, 1961.", timestamps=False)
    assert decoder[0] == engine.vocab.sot_prev
    assert decoder.index(engine.vocab.sot) > 3
    clip = next(c for c in english_clips if "jfk" in c.name)
    result = await engine.transcribe(DecodeRequest(read_audio(clip.path), prompt="Inaugural address, 1961."))
    assert normalize(result.text) == normalize(JFK)


def lf_first_clip_text() -> str:
    return next(f for f in longform_files(TEST_DATA)).segments[0]["text"]


async def test_bad_arrays(engine):
    with pytest.raises(AudioError):
        await engine.transcribe(DecodeRequest(np.array([], dtype=np.float32)))
    with pytest.raises(AudioError):
        await engine.transcribe(DecodeRequest(np.full(SAMPLE_RATE, np.nan, dtype=np.float32)))
    # Digital silence gives no text (Whisper alone says "you" to it), also with dither.
    for quiet in (np.zeros(5 * SAMPLE_RATE), np.random.default_rng(0).standard_normal(30 * SAMPLE_RATE) * 3e-5):
        silence = await engine.transcribe(DecodeRequest(quiet.astype(np.float32)))
        assert silence.text == "" and silence.language == "en"
    clipped = np.clip(read_audio(next(f for f in longform_files(TEST_DATA)).path)[: 10 * SAMPLE_RATE] * 10, -1, 1)
    result = await engine.transcribe(DecodeRequest(clipped))
    assert re.search(r"exhibition", result.text, re.I)  # heavily clipped speech still transcribes
    assert wer([lf_first_clip_text()], [result.text]) < 0.5
