"""Issue 21 on the real engine: a long file's window is decoded to its last speech in one pass.

Whisper ends a window with end-of-text at a change of speaker and says nothing of the
rest; the coverage check then decoded the rest again (a second encoder pass). With the
end-of-text token masked until the decode's timestamps reach the window's last speech
(engine/keep_decoding.py, `LongformOptions.keep_decoding`), the decoder goes on in the
same pass. The file is the bench's untuned one (clips of sources no setting was tuned
on, joined with pauses): with the rule off, tiny.en ends several of its windows early.
"""

from __future__ import annotations

import difflib

from engine.base import DecodeRequest


class CountingDecoder:
    """The real engine, counting window decodes and noting each one's length as it arrives."""

    def __init__(self, inner) -> None:
        self.inner, self.info, self.windows, self.arrived = inner, inner.info, 0, []

    async def detect_language(self, audio, priority=0):
        return await self.inner.detect_language(audio, priority)

    async def transcribe_window(self, request, offset=0.0):
        self.windows += 1
        self.arrived.append(request.duration)
        return await self.inner.transcribe_window(request, offset)


def _found(sentence: str, hypothesis: str) -> bool:
    """Most of a reference sentence's words come back, in order."""
    from evaluation.text import normalize

    words, hyp = normalize(sentence).split(), normalize(hypothesis).split()
    matcher = difflib.SequenceMatcher(None, words, hyp, autojunk=False)
    return sum(b.size for b in matcher.get_matching_blocks()) >= 0.7 * len(words)


async def test_windows_are_decoded_to_their_last_sound_in_one_pass(engine, eval_set) -> None:
    from bench.longform_profile import unseen_sentences
    from engine.longform import LongformOptions, split_audio, transcribe_long

    audio, sentences = unseen_sentences()
    pieces = len(split_audio(audio))

    early = CountingDecoder(engine)
    stopped = await transcribe_long(early, DecodeRequest(audio, language="en"), LongformOptions(keep_decoding=False))
    kept = CountingDecoder(engine)
    # A copy scaled by a hair: vLLM's encoder cache would otherwise serve the same windows.
    result = await transcribe_long(kept, DecodeRequest(audio * 1.0001, language="en"), LongformOptions())

    print(f"{pieces} pieces: {early.windows} decodes without the rule, {kept.windows} with it")
    assert early.windows > pieces, "tiny.en no longer ends this file's windows early: pick another file"
    assert kept.windows == pieces, "a window was decoded again"
    assert kept.arrived == sorted(kept.arrived, reverse=True), "pieces reach the engine longest first"
    lost = [s for s in sentences if _found(s, stopped.text) and not _found(s, result.text)]
    assert not lost, f"sentences the rule lost: {lost}"
    assert sum(_found(s, result.text) for s in sentences) >= sum(_found(s, stopped.text) for s in sentences)
    assert not [s for s in result.segments if s.kind == "gap"]
    times = [(s.start, s.end) for s in result.segments]
    assert times == sorted(times) and all(a <= b for a, b in times)



async def test_the_encoder_runs_bf16_where_the_cpu_has_it_and_the_decoder_float32(engine, english_clips) -> None:
    """CPU_DTYPE=auto (the default): on a CPU with AVX-512 BF16 / AMX the registered Whisper
    model's encoder weights are bf16 (vLLM packed its oneDNN kernels for them) and the
    decoder's float32; elsewhere all float32. Either way the words come out right."""
    import torch

    from engine.vllm_engine import BF16_CPU_FLAGS, cpu_flags
    from evaluation import read_audio
    from evaluation.text import normalize, wer

    core = engine._runner._engine.engine_core.engine_core
    model = core.model_executor.driver_worker.worker.model_runner.model
    bf16 = bool(cpu_flags() & BF16_CPU_FLAGS)
    assert model.model.encoder.conv1.weight.dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert model.model.decoder.embed_tokens.weight.dtype == torch.float32
    assert engine.info.settings["encoder_dtype"] == ("bfloat16" if bf16 else "float32")
    clip = max((c for c in english_clips if c.duration < 12), key=lambda c: c.duration)
    result = await engine.transcribe(DecodeRequest(read_audio(clip.path), language="en"))
    assert wer([normalize(clip.text)], [normalize(result.text)]) <= 0.1, result.text
