"""A long file's window decodes to its last speech (issue 21): the logits rule and where the
long-form path asks for it. The real engine's side is tests/integration/test_keep_decoding_engine.py."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from engine.base import SAMPLE_RATE, DecodeRequest, EngineInfo, Segment, Transcription

EOT, TS = 50256, 50363  # tiny.en's <|endoftext|> and <|0.00|>


def test_end_is_allowed_once_the_last_timestamp_reaches_the_mark() -> None:
    from engine.keep_decoding import end_allowed

    mark = TS + 500  # 10.00 s
    assert not end_allowed([], TS, mark)
    assert not end_allowed([TS, 11, 12, TS + 200], TS, mark)
    assert end_allowed([TS, 11, TS + 200, TS + 200, 13, TS + 500], TS, mark)
    # The last timestamp counts, text after it does not move it.
    assert end_allowed([TS, 11, TS + 600, 14, 15], TS, mark)


def test_the_processor_masks_end_of_text_only_for_requests_that_ask() -> None:
    import torch
    from vllm import SamplingParams

    from engine.keep_decoding import EXTRA_ARG, KeepDecodingUntilSound

    processor = KeepDecodingUntilSound(None, torch.device("cpu"), False)  # type: ignore[arg-type]
    assert processor.new_req_logits_processor(SamplingParams()) is None
    rule = processor.new_req_logits_processor(SamplingParams(extra_args={EXTRA_ARG: (EOT, TS, TS + 500)}))
    assert rule is not None
    logits = torch.zeros(TS + 1500)
    logits[EOT] = 5.0  # the decoder wants to stop
    out = rule([TS, 11, TS + 100], logits.clone())
    assert out[EOT] == float("-inf") and int(out.argmax()) != EOT
    out = rule([TS, 11, TS + 520], logits.clone())
    assert int(out.argmax()) == EOT
    assert processor.is_argmax_invariant() is False


@pytest.fixture(scope="module")
def speech():
    """tests/data's English clips (always in the repository)."""
    from evaluation import clips, read_audio
    from tests.datasets import TEST_DATA

    return [read_audio(c.path) for c in clips(kind="speech", lang="en", base=TEST_DATA)]


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def test_the_mark_is_the_last_speech_less_the_coverage_tolerance(speech) -> None:
    from engine.coverage import COLLAR_S, MIN_HOLE_S
    from engine.longform import _end_not_before

    clip = speech[0]
    audio = np.concatenate([_silence(8.0), clip, _silence(0.3)])
    mark = _end_not_before(audio)
    speech_end = (8.0 * SAMPLE_RATE + len(clip)) / SAMPLE_RATE
    assert mark is not None
    assert speech_end - (COLLAR_S + MIN_HOLE_S) - 0.5 <= mark <= speech_end - (COLLAR_S + MIN_HOLE_S) + 0.2


def test_a_window_ending_in_noise_or_quiet_is_not_made_to_go_on(speech) -> None:
    """Made to go on into music or noise, tiny.en says "[inaudible]" until its token budget
    runs out (the bench's speech-and-noise file): no mark where the end holds no speech."""
    from engine.longform import _end_not_before

    rng = np.random.default_rng(0)
    noise = (0.03 * rng.standard_normal(6 * SAMPLE_RATE)).astype(np.float32)
    assert _end_not_before(np.concatenate([speech[0], _silence(0.5), noise])) is None
    assert _end_not_before(np.concatenate([speech[0], _silence(6.0)])) is None
    assert _end_not_before(_silence(1.0)) is None


class Recorder:
    """Answers every window with one segment over it and records each request."""

    info = EngineInfo("fake", "fake", "cpu", multilingual=False)

    def __init__(self) -> None:
        self.requests: list[tuple[float, DecodeRequest]] = []

    async def transcribe_window(self, request: DecodeRequest, offset: float = 0.0) -> Transcription:
        self.requests.append((offset, request))
        end = offset + request.duration
        text = " ".join(["word"] * int(3 * request.duration))
        return Transcription(text, "en", request.duration, [Segment(offset, end, text)])

    async def detect_language(self, audio, priority=0):
        return "en"


@pytest.mark.parametrize("keep", [True, False])
def test_each_long_file_window_asks_to_decode_to_its_last_speech(speech, keep: bool) -> None:
    from engine.longform import LongformOptions, transcribe_long

    parts = []
    for clip in speech * 3:
        parts += [clip, _silence(1.0)]
    audio = np.concatenate(parts)[: 80 * SAMPLE_RATE]
    decoder = Recorder()
    asyncio.run(transcribe_long(decoder, DecodeRequest(audio, language="en"), options=LongformOptions(keep_decoding=keep)))
    assert len(decoder.requests) >= 3
    for _, request in decoder.requests:
        assert request.timestamps
        if keep:  # a piece ends in a pause after speech (trimmed to its sound, +0.3 s)
            assert request.end_not_before == pytest.approx(request.duration - 1.5 - 0.3, abs=0.5)
        else:
            assert request.end_not_before is None


def test_pieces_go_to_the_engine_longest_first_and_come_back_in_time_order(speech) -> None:
    from engine.longform import LongformOptions, split_audio, transcribe_long

    parts = []
    for i, clip in enumerate(speech * 4):
        parts += [clip, _silence(1.0 if i % 3 else 0.3)]
    audio = np.concatenate(parts)[: 100 * SAMPLE_RATE]
    pieces = split_audio(audio)
    for longest_first in (True, False):
        decoder = Recorder()
        options = LongformOptions(longest_first=longest_first)
        result = asyncio.run(transcribe_long(decoder, DecodeRequest(audio, language="en"), options=options))
        durations = [round(r.duration, 3) for _, r in decoder.requests]
        expected = [round(len(p) / SAMPLE_RATE, 3) for _, p in pieces]
        assert durations == (sorted(expected, reverse=True) if longest_first else expected)
        starts = [s.start for s in result.segments]
        assert starts == sorted(starts) and len(starts) == len(pieces)
