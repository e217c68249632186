"""Word times for the in-process engine: a teacher-forced pass beside vLLM.

vLLM 0.32 gives no cross-attention for Whisper, so the decoded tokens are run once
more through transformers' Whisper on the same converted weights (the model
directory vLLM loaded: the embedded models included, no second download), with the
attention of the alignment heads returned. The arithmetic is engine/word_times.py.

The encoder sees the same window as vLLM's (engine/whisper_buckets.py: the clip's
bucket, 30 s only for long windows): a 30 s encoder pass cost ~0.5 s on this 2-core
CPU, more than the final's whole decode, and the window only needs to hold the audio.

The model is loaded on the first request that asks for word times and kept once per
process. Requests go to one worker thread (torch off the event loop, one pass at a
time on the shared cores); windows waiting together (the pieces of a long file) are
run as one batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.base import SAMPLE_RATE, Word
from engine.word_times import Decode, attention_cost, end_at_sound, snap_to_speech, token_start_frames, words_from_alignment

log = logging.getLogger(__name__)

#: Windows aligned in one forward pass at most (30 s each; tiny's attention for 8 is ~40 MB).
MAX_BATCH = 8
#: Samples per encoder frame (20 ms).
SAMPLES_PER_FRAME = 320


@dataclass(frozen=True)
class AlignJob:
    """One window to align: its audio, the decoder prefix (start of transcript, language,
    task, no-timestamps), the text tokens the decoder produced, and where it sits."""

    audio: np.ndarray = field(repr=False)
    prefix: list[int]
    tokens: list[int]
    offset: float
    language: str | None
    #: The encoder window in seconds (vLLM's for this clip), at least the audio's length.
    window_s: float = 30.0
    #: Move word edges that fall in silence to the VAD's speech edges (`snap_to_speech`).
    snap: bool = True


def alignment_heads(model_dir: Path, layers: int, heads: int) -> list[tuple[int, int]]:
    """The model's published alignment heads (generation_config.json: the converter
    copies them from CTranslate2's config, the hub's Whisper repos publish them), else
    every head of the decoder's second half (openai-whisper's default)."""
    path = model_dir / "generation_config.json"
    if path.exists():
        found = json.loads(path.read_text()).get("alignment_heads")
        if found:
            return [(int(layer), int(head)) for layer, head in found]
    return [(layer, head) for layer in range(layers // 2, layers) for head in range(heads)]


class BatchWorker:
    """One thread that runs `run(jobs)` on whatever jobs wait together (up to MAX_BATCH),
    so torch stays off the event loop and one pass at a time uses the shared cores."""

    def __init__(self, run: Callable[[list[AlignJob]], list[list[Word]]]) -> None:
        self._run = run
        self._queue: queue.Queue[tuple[AlignJob, Future[list[Word]]]] = queue.Queue()
        #: Jobs run, and jobs skipped because their waiter was cancelled before their turn.
        self.aligned = 0
        self.skipped = 0
        threading.Thread(target=self._serve, name="word-aligner", daemon=True).start()

    def submit(self, job: AlignJob) -> Future[list[Word]]:
        """Queue a job; cancelling the future before its turn drops it (asyncio.wrap_future
        cancels it when its awaiting task is cancelled)."""
        future: Future[list[Word]] = Future()
        self._queue.put((job, future))
        return future

    def _serve(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # A waiter that went away (a live stream's speculative final, cancelled when
            # speech resumed) costs no pass.
            waiting = len(batch)
            batch = [(job, future) for job, future in batch if future.set_running_or_notify_cancel()]
            self.skipped += waiting - len(batch)
            self.aligned += len(batch)
            if not batch:
                continue
            try:
                results = self._run([job for job, _ in batch])
            except Exception as exc:  # every waiter hears the failure
                log.exception("word alignment failed")
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), words in zip(batch, results):
                    future.set_result(words)


class Aligner:
    """The transformers Whisper model with its alignment heads, and its worker thread."""

    def __init__(self, model_dir: Path, decode: Decode, eot: int, device: str = "cpu") -> None:
        import torch
        from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

        dtype = torch.float16 if device == "cuda" else torch.float32
        self._torch = torch
        self._device = device
        # Eager attention: the only implementation that returns the attention weights.
        self._model = (
            WhisperForConditionalGeneration.from_pretrained(str(model_dir), attn_implementation="eager", dtype=dtype)
            .to(device)
            .eval()
        )
        self._features = WhisperFeatureExtractor.from_pretrained(str(model_dir))
        config = self._model.config
        self.heads = alignment_heads(model_dir, config.decoder_layers, config.decoder_attention_heads)
        self._decode = decode
        self._eot = eot
        #: Clips whose encoder output came from vLLM's own pass, and clips encoded here.
        self.reused = 0
        self.encoded = 0
        self.worker = BatchWorker(self.align)

    async def words(self, job: AlignJob) -> list[Word]:
        """The words of one window, aligned in the worker thread (batched with any
        other window waiting); a cancelled wait that has not started costs no pass."""
        if not job.tokens:
            return []
        return await asyncio.wrap_future(self.worker.submit(job))

    def align(self, jobs: list[AlignJob]) -> list[list[Word]]:
        """Batched teacher-forced passes, one per encoder window among the jobs (each
        window as vLLM encoded it); blocking (runs in the worker thread)."""
        results: list[list[Word]] = [[] for _ in jobs]
        groups: dict[float, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.window_s, []).append(i)
        for window_s, indices in groups.items():
            for i, words in zip(indices, self._align_window([jobs[i] for i in indices], window_s)):
                results[i] = words
        return results

    def _align_window(self, jobs: list[AlignJob], window_s: float) -> list[list[Word]]:
        torch = self._torch
        rows = [job.prefix + job.tokens + [self._eot] for job in jobs]
        width = max(len(r) for r in rows)
        # Right-padding with end-of-text: the decoder is causal, so padding changes no real position.
        ids = torch.tensor([r + [self._eot] * (width - len(r)) for r in rows], device=self._device)
        with torch.inference_mode():
            encoded = self._encode([job.audio for job in jobs], window_s)
            out = self._model(encoder_outputs=(encoded,), decoder_input_ids=ids, output_attentions=True)
        logprobs = torch.log_softmax(out.logits.float(), dim=-1)
        attention = torch.stack([out.cross_attentions[layer][:, head] for layer, head in self.heads], dim=1)
        attention = attention.float().cpu().numpy()  # (batch, heads, tokens, frames)
        results = []
        for b, job in enumerate(jobs):
            # Position p's query is the one that produces token p + 1: the rows that
            # produced the text tokens and end-of-text start at the prefix's last token.
            first = len(job.prefix) - 1
            last = first + len(job.tokens) + 1
            frames = max(1, min(attention.shape[-1], len(job.audio) // SAMPLES_PER_FRAME))
            cost = attention_cost(attention[b, :, first:last], frames)
            targets = torch.tensor(job.tokens, device=logprobs.device)
            token_logprobs = logprobs[b, first : first + len(job.tokens)].gather(1, targets[:, None])[:, 0]
            words = words_from_alignment(
                job.tokens,
                self._decode,
                token_logprobs.tolist(),
                token_start_frames(cost),
                offset=job.offset,
                duration=len(job.audio) / SAMPLE_RATE,
                language=job.language,
            )
            results.append(words)
        # Word edges snapped to the speech the VAD hears in each window (measured better:
        # BENCHMARKS.md, word times); the windows' VAD in one batched pass.
        snapping = [i for i, job in enumerate(jobs) if job.snap]
        for i, words in zip(snapping, _snapped([results[i] for i in snapping], [jobs[i] for i in snapping])):
            results[i] = words
        return results

    def _encode(self, audios: list[np.ndarray], window_s: float) -> Any:
        """The encoder's output for clips in a window of `window_s` seconds (vLLM's bucket
        for them, not always 30 s): the output vLLM's own encoder just computed for the
        same features where this process keeps it (engine/encoder_outputs.py), else this
        model's encoder.

        The features are computed exactly as vLLM's processor does (padded to the window,
        engine/whisper_bucketed_model.py), so the same clip finds its output. transformers'
        encoder refuses anything but 3000 mel frames, so its own modules are run here in
        its order (convolutions, the first positions' embeddings, the layers, the final
        norm), which is what vLLM's bucketed encoder does too."""
        from torch.nn.functional import gelu

        from engine.encoder_outputs import SHARED
        from engine.whisper_buckets import FULL_WINDOW_S, window_features

        samples = round(min(window_s, FULL_WINDOW_S) * SAMPLE_RATE)
        features = [window_features(self._features, audio, samples) for audio in audios]
        kept = [SHARED.get(f) for f in features]
        if all(k is not None for k in kept):
            self.reused += len(kept)
            return self._torch.stack(kept).to(self._device, self._model.dtype)
        encoder = self._model.model.encoder
        x = self._torch.stack(features).to(self._device, self._model.dtype)
        x = gelu(encoder.conv2(gelu(encoder.conv1(x)))).permute(0, 2, 1)
        x = x + encoder.embed_positions.weight[: x.shape[1]]
        for layer in encoder.layers:
            x = layer(x, None)
        self.encoded += len(audios)
        return encoder.layer_norm(x)


def _snapped(words: list[list[Word]], jobs: list[AlignJob]) -> list[list[Word]]:
    """Each job's words with their edges snapped to the speech the VAD hears in its window."""
    from engine.vad import speech_regions_of

    if not jobs:
        return []
    # No padding: a padded region would move every snapped edge 50 ms into the silence.
    found = speech_regions_of([job.audio for job in jobs], pad_s=0.0)
    out = []
    for w, job, regions in zip(words, jobs, found):
        shifted = [(job.offset + a, job.offset + b) for a, b in regions]
        out.append(end_at_sound(snap_to_speech(w, shifted), job.audio, job.offset, shifted))
    return out


_aligners: dict[str, Aligner] = {}
_aligners_lock = threading.Lock()


def aligner_for(model_dir: Path, decode: Decode, eot: int, device: str = "cpu") -> Aligner:
    """The process's one aligner for this model directory, loaded on first use (blocking:
    call it off the event loop)."""
    key = f"{model_dir}|{device}"
    with _aligners_lock:
        if key not in _aligners:
            log.info("loading the word aligner for %s (%s)", model_dir, device)
            _aligners[key] = Aligner(model_dir, decode, eot, device)
        return _aligners[key]
