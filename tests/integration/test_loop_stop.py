"""A decode stuck in a loop is stopped as soon as it repeats itself, then redone
(engine.vllm_engine: `_decode` and `transcribe_window`), on the real engine.

The incident (bench short-utterance set, 4 streams stopping together): the prompt
"Please enter the conference PIN number.", its quiet edges trimmed and 0.2 s of digital
silence around it, loops in its 10 s encoder window ("Please enter the conference PIN
number. Please enter the conference PIN number. ..."). The decode used to run to its
token budget before the full-window redo could start; four streams at once made that
the p95 final latency (3.0 s).
"""

from __future__ import annotations

import numpy as np

from engine.base import DecodeRequest
from engine.quality import stuck_in_loop

SR = 16_000


def _incident_clip(eval_set) -> np.ndarray:
    from bench.coverage import trimmed
    from evaluation import read_audio

    speech = trimmed(read_audio(eval_set / "clips" / "asterisk_en__conf-getpin.flac"))
    quiet = np.zeros(int(0.2 * SR), np.float32)
    return np.concatenate([quiet, speech, quiet]).astype(np.float32)


def _recording_generate(runner, monkeypatch) -> list[dict]:
    real_generate = runner.generate
    decodes: list[dict] = []

    async def recording(prompt, params, priority=0):
        record = {"max_tokens": params.max_tokens, "tokens": 0, "text": ""}
        decodes.append(record)
        async for output in real_generate(prompt, params, priority):
            record["tokens"] += len(output.outputs[0].token_ids)
            record["text"] += output.outputs[0].text
            yield output

    monkeypatch.setattr(runner, "generate", recording)
    return decodes


async def test_a_looping_decode_is_stopped_early_and_redone(engine, eval_set, monkeypatch) -> None:
    from evaluation.text import normalize

    decodes = _recording_generate(engine._runner, monkeypatch)
    audio = _incident_clip(eval_set)
    result = await engine.transcribe(DecodeRequest(audio, language="en"))

    assert normalize(result.text) == normalize("Please enter the conference PIN number.")
    first = decodes[0]
    assert stuck_in_loop(first["text"], len(audio) / SR), f"the short window did not loop this time: {first['text']!r}"
    assert first["tokens"] < first["max_tokens"], first
    # Then one redo on the full window, which does not loop.
    assert len(decodes) == 2 and not stuck_in_loop(decodes[1]["text"], len(audio) / SR)


async def test_a_phrase_said_three_times_is_never_cut_short(engine, test_data, monkeypatch) -> None:
    """Real speech is never stopped: a sentence said three times over, with pauses, comes
    back three times, and no decode of it was cut short. (Whisper's own compression-ratio
    rule still calls this text a loop and decodes it again: that is stock behaviour.)"""
    from evaluation import clips, read_audio
    from evaluation.text import normalize

    runner = engine._runner
    real_generate = runner.generate
    finished: list[bool] = []

    async def counting_generate(prompt, params, priority=0):
        finished.append(False)
        async for output in real_generate(prompt, params, priority):
            finished[-1] = output.finished
            yield output

    monkeypatch.setattr(runner, "generate", counting_generate)
    clip = next(c for c in clips(kind="speech", lang="en", base=test_data) if "arctic_a0009" in c.path.stem)
    speech = read_audio(clip.path)
    pause = np.zeros(int(0.6 * SR), np.float32)
    audio = np.concatenate([speech, pause, speech, pause, speech]).astype(np.float32)
    result = await engine.transcribe(DecodeRequest(audio, language="en"))
    words = normalize(result.text).split()
    assert len(words) >= 3 * len(normalize(clip.text).split()) - 3, result.text
    assert finished and all(finished), f"a decode of real speech was stopped: {finished}"


async def test_an_unsure_short_window_decode_of_birdsong_gives_no_words(engine, eval_set) -> None:
    """The bench's non-speech set: a robin's whistle (2-3 s) in a 10 s window came back as
    "I'm so..." (mean log-probability -2.2) where the full window says "[Squeaking]". An
    unsure short-window decode is now redone on the full window."""
    from evaluation import read_audio
    from evaluation.text import normalize

    audio = read_audio(eval_set / "clips" / "nonspeech__456440__inspectorj__bird-whistling-robin-single-13.flac")
    result = await engine.transcribe(DecodeRequest(audio))
    assert normalize(result.text).split() == [], result.text


def _first_half_second(test_data) -> np.ndarray:
    """What the first partial of an utterance decodes: 0.1 s of quiet before the speech
    and its first 0.42 s ("Print..."), from the browser test's clip. In its 10 s encoder
    window tiny.en says "printing printing printing ..." (seen in the browser test, where
    redoing that partial on the full window held two pages' partials back seconds)."""
    from evaluation import clips, read_audio

    clip = next(c for c in clips(kind="speech", lang="en", base=test_data) if "LJ001-0001" in c.path.stem)
    speech = read_audio(clip.path)[: int(0.42 * SR)]
    return np.concatenate([np.zeros(int(0.1 * SR), np.float32), speech]).astype(np.float32)


async def test_a_one_word_loop_is_stopped_and_a_draft_is_not_decoded_again(engine, test_data, monkeypatch) -> None:
    from evaluation.text import normalize
    from streaming.guards import strip_repetition

    decodes = _recording_generate(engine._runner, monkeypatch)
    audio = _first_half_second(test_data)

    draft = await engine.transcribe(DecodeRequest(audio, language="en", draft=True))
    assert len(decodes) == 1, decodes
    looped = decodes[0]
    assert stuck_in_loop(looped["text"], len(audio) / SR), f"the short window did not loop this time: {looped}"
    assert looped["tokens"] < looped["max_tokens"], looped
    # The live session strips the loop: the partial shows the word once.
    assert normalize(strip_repetition(draft.text)).split() in (["printing"], ["print"]), draft.text

    decodes.clear()
    final = await engine.transcribe(DecodeRequest(audio, language="en"))
    assert len(decodes) == 2 and decodes[0]["tokens"] < decodes[0]["max_tokens"], decodes
    assert len(normalize(final.text).split()) <= 2, final.text
