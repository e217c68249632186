"""One live stream: audio frames in, `partial` / `final` / `status` / `error` events out.

    frames ─▶ FrameResampler ─▶ SileroVAD (32 ms) ─▶ Segmenter ─▶ decode policy ─▶ guards ─▶ LocalAgreement ─▶ events

Decode policy (all decodes go to the one shared engine; nothing here blocks the loop
for long: resampling and VAD cost well under a millisecond per 20 ms frame):

* Partials: while an utterance is open, its audio so far is decoded every
  `partial_interval_s` of new audio, the first one as soon as `first_partial_s` of it
  is there. At most one partial is in flight per session; when a decode is slower than
  the interval, the requests that would have piled up are simply never made (the next
  one takes the newest audio), and the interval is raised (up to `max_partial_interval_s`)
  until decoding keeps up again, then lowered back. No partial starts while a final of
  the session is being decoded, nor while the engine already has
  `max_decodes_in_flight` decodes of any session (`streaming.scheduler`: finals first).
* Speculative final: as soon as the VAD reports silence after speech and the padded end
  of the speech has arrived, the final's exact audio is known and is decoded at once.
  If the silence lasts `min_silence_ms`, that result is the final (final latency is
  about the minimum silence); if speech resumes, the request is cancelled (which aborts
  it in the engine). A partial already in flight is left to finish (pauses shorter than
  the minimum silence are common; cancelling would waste it), but no new partial starts
  while the speculative final runs.
* Semantic turns (`turn_detection="semantic"`, `streaming.turns`): once the silence has
  lasted `turn_check_ms`, the turn model is asked (off the loop, on its worker thread)
  whether the utterance so far is a finished turn. Yes, and the speculative final above
  ends a sentence (`turn_text_check`: its text is the final, so reading it costs no
  time): the utterance ends now, with that decode as its final. No, or words that stop
  mid-phrase: it stays open until speech resumes or the eagerness' longer silence ends
  it. One question per pause; its wait counts in `lag_s` (the utterance stays open
  meanwhile) and in the final's latency.
* Finals are never dropped: a failed decode is retried once, then reported as an
  `ErrorEvent` (and the words already committed by partials become the final text).
  The final decode sees the whole utterance and is authoritative: where it disagrees
  with words committed by partials it wins, and the change is counted in
  `stats.revisions` (`final_overrides_committed=False` keeps committed words instead).
  Finals are emitted in utterance order. An utterance that continues one force-cut at
  `max_utterance_s` is decoded with the previous final text as prompt (`use_prompt`),
  unless that looks like a loop; a prompted final that comes back far too short is
  decoded again without it.
* Word times (`word_times`, setting `LIVE_WORD_TIMES`): the final's decodes (the
  speculative one included) ask the engine for word times, partials only with
  `partial_words` (LIVE_PARTIAL_WORD_TIMES); the aligning pass is part of the decode, so
  it counts in `lag_s` and the final's latency. The final (and such a partial) carries
  the words that spell its text, in session time (`streaming.words`).
* Speakers (`speakers`, setting `LIVE_SPEAKERS`): each final's audio is embedded in a
  worker thread while it decodes and labelled in utterance order ("Speaker 1", never
  changed once given; `streaming.speakers`); a final waiting for its label counts in
  `lag_s` and its latency like a decode. With word times on too, a final holding two
  voices labels its words one by one (`Word.speaker`; `speaker` is its first words').
* Guards on every decode: `strip_repetition`, then `drop_reason` with the VAD's speech
  ratio and the decoder's confidence, so silence, noise and music give no text and a
  loop is never committed nor fed back as a prompt.

`latency_s` of an event is the wall time from the arrival of its audio's end (`end_s`)
to the event. `lag_s` is how far the shown text is behind the audio received: for the
open utterance, received audio minus the end of the audio its last event covered; for a
final still being decoded, the time since its end arrived (the larger of the two).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import numpy as np

from engine.base import PRIORITY_BACKGROUND, PRIORITY_DEFAULT, SAMPLE_RATE, DecodeRequest
from engine.public import public_message, redact_urls
from streaming.events import ErrorEvent, Event, StatusEvent, TranscriptEvent
from streaming.guards import drop_reason, is_repetition_loop, strip_repetition
from streaming.resample import FrameResampler
from streaming.options import SessionOptions, SessionStats
from streaming.segmenter import Segmenter, UtteranceEnded, UtteranceStarted
from streaming.stabilize import LocalAgreement, LocalAgreementOptions, normalize_word
from streaming.scheduler import gate_for
from streaming.transcript import Transcript
from streaming.turns import TurnScorer, eagerness_of, ends_sentence, shared_detector
from streaming.words import final_logprobs, final_words

__all__ = ["Session", "SessionOptions", "SessionStats"]

log = logging.getLogger(__name__)

_END = object()


@dataclass(frozen=True)
class _Barrier:
    """A marker in the event queue: `events()` resolves it instead of yielding it."""

    future: asyncio.Future


@dataclass
class _Utt:
    id: int
    start_s: float
    la: LocalAgreement
    covered_s: float = 0.0  # end of the audio the last event covered
    next_partial_s: float = 0.0  # snapshot end at which the next partial is due
    partials: int = 0
    committed: str = ""
    last_text: str = ""  # committed + tentative of the last partial
    continuation: bool = False  # the previous utterance was force-cut right before it
    language: str | None = None
    ended: bool = False


def _live_speakers(split: bool):
    """A stream's speaker labels (scikit-learn and the encoder: imported when a stream asks);
    `split` where its finals have word times (a voice change inside one is kept)."""
    from streaming.speakers import LiveSpeakers

    return LiveSpeakers(split=split)


class Session:
    """One stream. Create, `feed()` frames, read `events()`, then `finish()` or `close()`."""

    def __init__(
        self,
        engine,
        options: SessionOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        turns: TurnScorer | None = None,
    ) -> None:
        from streaming.vad import SileroVAD  # onnxruntime: imported with the first session

        self.engine = engine
        self.options = opts = options or SessionOptions()
        self._clock = clock
        self._resampler = FrameResampler()
        self._vad = SileroVAD()
        self._segmenter = Segmenter(opts.segmenter_options())
        self._gate = gate_for(engine, opts.max_decodes_in_flight)
        self.transcript = Transcript()
        self.stats = SessionStats(partial_interval_s=opts.partial_interval_s)
        self._interval = opts.partial_interval_s
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._received = 0  # samples
        self._arrivals: deque[tuple[int, float]] = deque()  # (samples received, wall time)
        self._current: _Utt | None = None
        self._partial: asyncio.Task | None = None
        self._partial_utt: _Utt | None = None
        self._spec: asyncio.Task | None = None
        self._spec_key: tuple[int, float] | None = None
        # The turn model (semantic turns): the process' shared one unless given; taken
        # now so that its loading starts with the first semantic stream.
        self._turns = turns if turns is not None or opts.turn_detection != "semantic" else shared_detector()
        if opts.word_times and hasattr(engine, "prepare_words"):
            engine.prepare_words()  # the aligner loads while the first utterance is spoken
        self._turn: asyncio.Task | None = None
        self._turn_key: tuple[int, float] | None = None  # (utterance, pending end) asked
        self._finals: dict[int, asyncio.Task] = {}  # utterance id -> final task
        self._last_final: asyncio.Task | None = None
        self._speakers = _live_speakers(opts.word_times) if opts.speakers else None
        self._final_texts: deque[str] = deque(maxlen=8)
        self._pending_final_ends: dict[int, float] = {}  # id -> arrival time of end_s
        self._last_status_s = 0.0
        self._forced_end: float | None = None  # end of the last utterance if force-cut
        self._done = False  # finish()/close() called: feed() ignored
        self._ended = False  # events() terminated

    # -- public API ---------------------------------------------------------------

    def feed(self, frame: np.ndarray, sample_rate: int) -> None:
        """Take one frame (any dtype, layout, rate). Non-blocking; call on the loop thread."""
        if self._done:
            return
        audio = self._resampler.process(frame, sample_rate)
        if audio.size == 0:
            return
        now = self._clock()
        self._received += audio.size
        self._arrivals.append((self._received, now))
        for window in self._vad.process_windows(audio):
            for ev in self._segmenter.feed(window.audio, window.prob):
                self._on_segment(ev)
        self._prune_arrivals()
        self._schedule()
        self._update_lag(now)
        if self._received / SAMPLE_RATE - self._last_status_s >= self.options.status_interval_s:
            self._emit_status()

    async def finish(self) -> None:
        """End of input: the open utterance becomes a final; wait for every final."""
        if self._done:
            await self._wait_finals()
            return
        self._done = True
        for ev in self._segmenter.flush():
            self._on_segment(ev)
        self._cancel_partial()
        self._cancel_turn()
        await self._wait_finals()
        self._cancel_spec()
        self._emit_status()
        self._end_events()

    def commit(self) -> None:
        """End the open utterance now (a client's commit): its final follows like any
        other; the stream goes on, later audio starts a new utterance."""
        if self._done:
            return
        for ev in self._segmenter.flush():
            self._on_segment(ev)
        self._schedule()

    def clear(self) -> None:
        """Drop the audio that has not ended an utterance yet (a client's clear): the open
        utterance or candidate, with its partial and speculative decodes. Finals of
        utterances that had already ended are not touched: they still arrive."""
        if self._done:
            return
        self._segmenter.discard()
        self._current = None
        self._cancel_partial()
        self._cancel_spec()
        self._cancel_turn()
        self._gate.forget(self)
        self._update_lag(self._clock())

    @property
    def finals_in_flight(self) -> int:
        """Finals being decoded (utterances that ended and whose final is not out yet)."""
        return len(self._finals)

    async def wait_final_done(self) -> None:
        """Return when any final in flight is done (at once when there is none)."""
        if self._finals:
            await asyncio.wait(list(self._finals.values()), return_when=asyncio.FIRST_COMPLETED)

    async def wait_finals(self) -> None:
        """Return when every final of the utterances ended so far is out."""
        await self._wait_finals()

    async def drained(self) -> None:
        """Return once the reader of `events()` has taken every event queued so far and
        asked for the next one (so it has handled them all). Needs a running reader."""
        if self._ended:
            return
        marker = _Barrier(asyncio.get_running_loop().create_future())
        self._queue.put_nowait(marker)
        await marker.future

    async def close(self) -> None:
        """Stop now: cancel every decode and end `events()`."""
        self._done = True
        self._gate.forget(self)
        self._cancel_partial()
        self._cancel_spec()
        self._cancel_turn()
        tasks = list(self._finals.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._finals.clear()
        self._end_events()

    async def events(self) -> AsyncIterator[Event]:
        """Events in order until `finish()` has delivered the last final or `close()`."""
        while True:
            item = await self._queue.get()
            if isinstance(item, _Barrier):
                if not item.future.done():
                    item.future.set_result(None)
                continue
            if item is _END:
                self._queue.put_nowait(_END)  # a second reader ends too
                return
            yield item  # type: ignore[misc]

    @property
    def audio_s(self) -> float:
        return self._received / SAMPLE_RATE

    # -- segmenter events ---------------------------------------------------------

    def _on_segment(self, ev: UtteranceStarted | UtteranceEnded) -> None:
        if isinstance(ev, UtteranceStarted):
            self._current = _Utt(
                ev.id,
                ev.start_s,
                self._new_agreement(),
                covered_s=ev.start_s,
                next_partial_s=ev.start_s + self.options.first_partial_s,
                continuation=self._forced_end is not None and abs(ev.start_s - self._forced_end) < 1e-6,
            )
            return
        self._forced_end = ev.end_s if ev.forced else None
        utt = (
            self._current
            if self._current and self._current.id == ev.id
            else _Utt(ev.id, ev.start_s, self._new_agreement())
        )
        utt.ended = True
        self._current = None
        self._cancel_turn()
        if self._partial_utt is utt:
            self._cancel_partial()
        spec = None
        if self._spec is not None:
            if self._spec_key == (ev.id, round(ev.end_s, 4)):
                spec, self._spec, self._spec_key = self._spec, None, None
            else:
                self._cancel_spec()
        self._pending_final_ends[ev.id] = self._arrival(ev.end_s)
        prev = self._last_final
        task = asyncio.ensure_future(self._run_final(utt, ev, spec, prev))
        self._finals[ev.id] = task
        self._last_final = task
        self._gate.forget(self)  # the utterance is over: no partial wanted any more
        self._gate.start_final()
        task.add_done_callback(lambda _t, i=ev.id: self._finals.pop(i, None))
        task.add_done_callback(lambda _t: self._gate.end_final())

    def _new_agreement(self) -> LocalAgreement:
        return LocalAgreement(
            LocalAgreementOptions(keep_committed_on_finalize=not self.options.final_overrides_committed)
        )

    # -- scheduling ---------------------------------------------------------------

    def _schedule(self) -> None:
        utt = self._current
        if utt is None or self._done:
            return
        opts = self.options
        if opts.turn_detection == "semantic":
            self._ask_turn(utt)
        if opts.speculative_final:
            pending = self._segmenter.pending_end_s
            if pending is None:
                if self._spec is not None:
                    self._cancel_spec()  # speech resumed
            elif self._spec_key != (utt.id, round(pending, 4)):
                self._cancel_spec()
                snap = self._segmenter.current()
                if snap is not None:
                    # The partial in flight (if any) is left to finish: cancelling it
                    # would waste it whenever the pause turns out to be short.
                    audio = np.array(snap.audio, dtype=np.float32, copy=True)
                    self._spec_key = (utt.id, round(snap.end_s, 4))
                    self._spec = asyncio.ensure_future(self._decode(audio, self._prompt(utt)))
                    self._spec.add_done_callback(_consume_exception)
                    self._gate.start_final()
                    self._spec.add_done_callback(lambda _t: self._gate.end_final())
            if self._spec is not None:
                return  # no partial while the final is being decoded
        if self._partial is not None or self._finals or opts.max_partial_interval_s <= 0:
            return
        snap = self._segmenter.current()
        if snap is None or snap.end_s < utt.next_partial_s:
            return
        if not self._gate.try_start_partial(self):
            return  # the engine is busy (finals first, then whoever waited longest): try again
        audio = np.array(snap.audio, dtype=np.float32, copy=True)
        utt.next_partial_s = snap.end_s + self._interval
        self._partial_utt = utt
        self._partial = asyncio.ensure_future(
            self._run_partial(utt, audio, snap.end_s, snap.speech_ratio)
        )
        self._partial.add_done_callback(lambda _t: self._gate.end_partial())

    def _cancel_partial(self) -> None:
        if self._partial is not None:
            self._partial.cancel()
        self._partial = None
        self._partial_utt = None

    def _ask_turn(self, utt: _Utt) -> None:
        """Semantic turns: ask the turn model once per pause, when it has lasted
        `turn_check_ms`; forget the question when speech resumes."""
        silence = self._segmenter.silence_s
        pending = self._segmenter.pending_end_s
        if silence is None or pending is None:
            self._cancel_turn()
            return
        key = (utt.id, round(pending, 4))
        if self._turn_key == key or silence * 1000.0 < self.options.turn_check_ms:
            return
        snap = self._segmenter.current()
        if snap is None:
            return
        self._cancel_turn()
        self._turn_key = key
        audio = np.array(snap.audio, dtype=np.float32, copy=True)
        self._turn = asyncio.ensure_future(self._run_turn(utt, key, audio))
        self._turn.add_done_callback(_consume_exception)

    @property
    def deciding_turn(self) -> bool:
        """Whether a turn question is open: the model's answer, then the pause's words."""
        return self._turn is not None

    async def _run_turn(self, utt: _Utt, key: tuple[int, float], audio: np.ndarray) -> None:
        me = asyncio.current_task()
        try:
            await self._decide_turn(utt, key, audio)
        finally:
            if self._turn is me:
                self._turn = None

    async def _decide_turn(self, utt: _Utt, key: tuple[int, float], audio: np.ndarray) -> None:
        scorer = self._turns
        if scorer is None:  # the options were switched to semantic after the start
            scorer = self._turns = shared_detector()
        t0 = self._clock()
        try:
            prob = await scorer.complete_probability(audio)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the silence rule still ends the utterance
            log.warning("turn model failed: %s", exc)
            return
        finally:
            self.stats.turn_checks += 1
            self.stats.turn_wait_s = round(self.stats.turn_wait_s + self._clock() - t0, 4)
        if not self._still_in_pause(utt, key):
            return  # speech resumed or the utterance ended meanwhile
        if prob < eagerness_of(self.options.eagerness).threshold:
            return  # not finished: the utterance stays open
        if self.options.turn_text_check and not await self._speculative_final_ends_sentence(key):
            self.stats.turn_text_holds += 1
            return  # the voice sounds finished, the words do not: the utterance stays open
        if not self._still_in_pause(utt, key):
            return  # speech resumed while the speculative final was decoded
        self.stats.turn_ends += 1
        for ev in self._segmenter.end_turn():
            self._on_segment(ev)
        self._update_lag(self._clock())
        self._schedule()

    def _still_in_pause(self, utt: _Utt, key: tuple[int, float]) -> bool:
        """Whether the pause a turn question was asked in (`key`) is still going on."""
        pending = self._segmenter.pending_end_s
        return not self._done and self._current is utt and pending is not None and (utt.id, round(pending, 4)) == key

    async def _speculative_final_ends_sentence(self, key: tuple[int, float]) -> bool:
        """Whether the speculative final of this pause ends a sentence (`ends_sentence`);
        True where there is no such decode to read. Costs no latency where the turn ends:
        the final is that decode, so it could not leave before it anyway."""
        spec = self._spec if self._spec_key == key else None
        if spec is None:
            return True
        try:
            # shield: cancelling this question (speech resumed) must not cancel the
            # decode, which the final may still take. Bounded: under load the decode may
            # come after the next turn has begun, and an utterance held open meanwhile
            # would swallow it (8 streams with word times: merges 3 -> 8 per 100).
            result = await asyncio.wait_for(asyncio.shield(spec), self.options.turn_text_wait_s)
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # this question was cancelled (speech resumed, the stream closed)
            return True  # the decode was dropped: the caller sees the pause is over
        except Exception:  # noqa: BLE001 -- timed out or failed: no evidence, the model's answer stands
            return True
        return ends_sentence(result.text)

    def _cancel_turn(self) -> None:
        if self._turn is not None:
            self._turn.cancel()
        self._turn = None

    def _cancel_spec(self) -> None:
        if self._spec is not None:
            self._spec.cancel()
        self._spec = None
        self._spec_key = None

    # -- decoding -------------------------------------------------------------------

    async def _decode(
        self, audio: np.ndarray, prompt: str | None, language: str | None = None, *, partial: bool = False
    ):
        # A partial waits behind every final in the engine's queue (engine.base priorities).
        return await self.engine.transcribe(
            DecodeRequest(
                audio,
                language=self.options.language or language,
                task=self.options.task,
                prompt=prompt,
                priority=PRIORITY_BACKGROUND if partial else PRIORITY_DEFAULT,
                draft=partial,
                # Word times cost an aligning pass (engine/aligner.py): partials ask only
                # where the stream wants their words too.
                word_timestamps=self.options.word_times and (self.options.partial_words or not partial),
                logprobs=self.options.logprobs and not partial,
            )
        )

    def _prompt(self, utt: _Utt) -> str | None:
        """The previous final text, for an utterance that continues it (the previous one
        was cut at `max_utterance_s` in the middle of speech): there the decoder lacks
        the context of a sentence begun in the other piece. After a real pause the
        prompt is not used: measured on the LJ long-form with tiny.en, prompting every
        final with the previous one raised the WER from 5.6 % to 7.4 % (a prompt now
        and then makes Whisper invent a lead-in or drop words), while unprompted finals
        match the offline whole-file WER.

        The caller's own prompt (`options.prompt`) is used on every decode, followed by
        the previous text of a continuation (the words right before the audio belong
        last). The engine keeps the last 224 tokens of a prompt (Whisper's limit)."""
        own = (self.options.prompt or "").strip()
        previous = self._previous_text(utt)
        return " ".join(part for part in (own, previous) if part) or None

    def _previous_text(self, utt: _Utt) -> str | None:
        if not self.options.use_prompt or not utt.continuation or not self._final_texts:
            return None
        text = " ".join(self._final_texts)
        limit = self.options.prompt_chars
        if len(text) > limit:
            cut = text[-limit:]
            space = cut.find(" ")
            text = cut[space + 1 :] if 0 <= space < len(cut) - 1 else cut
        text = text.strip()
        if not text or is_repetition_loop(text):
            return None
        return text

    def _clean(self, result, speech_ratio: float) -> str | None:
        text = strip_repetition((result.text or "").strip()).strip()
        reason = drop_reason(
            text,
            result.avg_logprob,
            None,  # recomputed on the stripped text
            speech_ratio,
            no_speech_prob=result.no_speech_prob,
        )
        if reason is not None:
            self.stats.dropped += 1
            log.debug("dropped decode (%s): %r", reason, result.text)
            return None
        return text

    async def _run_partial(self, utt: _Utt, audio: np.ndarray, end_s: float, speech_ratio: float) -> None:
        me = asyncio.current_task()
        t0 = self._clock()
        try:
            result = await self._decode(audio, self._prompt(utt), utt.language, partial=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed partial is not fatal; the final will retry
            log.warning("partial decode failed: %s", redact_urls(str(exc)))
            self._adapt(self._interval * 2)
            return
        finally:
            if self._partial is me:
                self._partial = None
                self._partial_utt = None
        self._adapt(self._clock() - t0)
        if utt.ended or self._current is not utt:
            return
        utt.language = utt.language or result.language
        text = self._clean(result, speech_ratio)
        if text is None:
            return
        committed, tentative = utt.la.update(text)
        self._check_revision(utt, committed)
        utt.last_text = text
        now = self._clock()
        utt.covered_s = end_s
        utt.partials += 1
        self.stats.partials += 1
        shown = " ".join(part for part in (committed, tentative) if part)
        self._put(
            TranscriptEvent(
                "partial",
                utt.id,
                committed,
                tentative,
                round(utt.start_s, 3),
                round(end_s, 3),
                round(max(0.0, now - self._arrival(end_s)), 3),
                result.language,
                # Only where this decode's words spell what the partial shows (committed
                # words from earlier decodes may differ): never a time for another word.
                words=final_words(result.words, shown, utt.start_s),
            )
        )
        self._update_lag(now)
        self._schedule()

    async def _run_final(self, utt: _Utt, ev: UtteranceEnded, spec: asyncio.Task | None, prev: asyncio.Task | None) -> None:
        result = None
        error: BaseException | None = None
        # The voice's embedding runs while the final decodes (its time is in the latency).
        voice = self._speakers.start(ev.audio) if self._speakers is not None else None
        try:
            if spec is not None:
                try:
                    result = await spec
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                        raise
                except Exception as exc:
                    error = exc
            attempts = 0
            prompt = self._prompt(utt)
            while result is None and attempts < (2 if spec is None or error is None else 1):
                attempts += 1
                try:
                    audio = np.array(ev.audio, dtype=np.float32, copy=True)
                    result = await self._decode(audio, prompt)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = exc
                    log.warning("final decode of utterance %d failed (try %d): %s", ev.id, attempts + (spec is not None), redact_urls(str(exc)))
            if result is not None and prompt and self._too_short(result.text, utt, ev):
                # A prompt sometimes makes Whisper write a few words and stop (it took
                # the audio for a continuation of the prompt): decode again without it.
                try:
                    audio = np.array(ev.audio, dtype=np.float32, copy=True)
                    retry = await self._decode(audio, None)
                    if len(retry.text.split()) > len(result.text.split()):
                        log.info("utterance %d: unprompted decode kept (%r over %r)", ev.id, retry.text, result.text)
                        result = retry
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("unprompted re-decode of utterance %d failed: %s", ev.id, redact_urls(str(exc)))
            if prev is not None and not prev.done():
                await asyncio.wait([prev])  # finals leave in utterance order
        except asyncio.CancelledError:
            if voice is not None:
                voice.cancel()
            self._pending_final_ends.pop(ev.id, None)
            raise
        now = self._clock()
        if result is None:
            self.stats.errors += 1
            # What the user reads of the failure: the rule of every door (engine.public),
            # never an upstream body or a URL with its credentials.
            reason = public_message(error) if error is not None else "no result"
            self._put(ErrorEvent("error", f"transcription failed: {reason}", ev.id))
            text = utt.la.committed if utt.partials else ""
            language = utt.language
        else:
            cleaned = self._clean(result, ev.speech_ratio)
            if cleaned is None:
                text = utt.la.committed  # keep the promise of committed words, nothing more
            else:
                text = utt.la.finalize(cleaned)
            language = result.language
        utt.la.reset()
        self._check_revision(utt, text)
        self._pending_final_ends.pop(ev.id, None)
        if not text and not utt.partials:
            if voice is not None:
                voice.cancel()
            self._update_lag(now)
            return  # nothing was said: no event at all
        # Labelled in utterance order (the previous final has left), so "Speaker 2" is the
        # second voice heard; only finals with text count.
        words = final_words(result.words, text, ev.start_s) if result is not None else ()
        speaker = None
        if voice is not None and text:
            # With word times, a voice change inside the utterance is kept word by word.
            voices = await self._speakers.label(voice, has_words=bool(words))
            if voices is not None:
                words = voices.label_words(words, ev.start_s)
                speaker = words[0].speaker if words and words[0].speaker else voices.speaker
            now = self._clock()  # a label still computing delays the final: its latency says so
        latency = max(0.0, now - self._arrival(ev.end_s))
        event = TranscriptEvent(
            "final", ev.id, text, "", round(ev.start_s, 3), round(ev.end_s, 3), round(latency, 3), language,
            words=words,
            logprobs=final_logprobs(result.logprobs, text) if result is not None else (),
            speaker=speaker,
        )
        if self.transcript.add(event) and not is_repetition_loop(text):
            self._final_texts.append(text)
        self.stats.finals += 1
        self.stats.last_final_latency_s = round(latency, 3)
        self._put(event)
        self._update_lag(now)
        self._emit_status()
        self._schedule()  # partials of the next utterance were held back meanwhile

    def _too_short(self, text: str, utt: _Utt, ev: UtteranceEnded) -> bool:
        """Far fewer words than the speech holds: fewer than 1 word per 1.5 s of VAD
        speech (people say 2 to 3 a second), or fewer than the last partial showed."""
        words = len(text.split())
        speech_s = (ev.end_s - ev.start_s) * ev.speech_ratio
        if speech_s >= 3.0 and words < speech_s / 1.5:
            return True
        shown = len(utt.last_text.split())
        return shown >= 4 and words < 0.6 * shown

    async def _wait_finals(self) -> None:
        while self._finals:
            await asyncio.gather(*list(self._finals.values()), return_exceptions=True)

    # -- bookkeeping ----------------------------------------------------------------

    def _adapt(self, decode_s: float) -> None:
        """Raise the partial interval when decodes are slower than it, lower it back when
        they keep up with room to spare."""
        base = self.options.partial_interval_s
        ceiling = max(base, self.options.max_partial_interval_s)
        interval = self._interval
        if decode_s > 0.8 * interval or self.stats.lag_s > 2.0 * ceiling:
            interval = min(ceiling, max(interval * 1.5, decode_s * 1.25))
        elif decode_s < 0.4 * interval:
            interval = max(base, interval * 0.8)
        if abs(interval - self._interval) > 1e-9:
            self._interval = interval
            self.stats.partial_interval_s = round(interval, 3)

    def _check_revision(self, utt: _Utt, committed: str) -> None:
        old = [normalize_word(w) for w in utt.committed.split()]
        new = [normalize_word(w) for w in committed.split()]
        if new[: len(old)] != old:
            self.stats.revisions += 1
        utt.committed = committed

    def _arrival(self, audio_s: float) -> float:
        """Wall time at which the audio up to `audio_s` had been received."""
        target = audio_s * SAMPLE_RATE - 0.5
        for samples, t in self._arrivals:
            if samples >= target:
                return t
        return self._arrivals[-1][1] if self._arrivals else self._clock()

    def _prune_arrivals(self) -> None:
        keep_from = self._received - int((self.options.max_utterance_s + 10) * SAMPLE_RATE)
        while len(self._arrivals) > 1 and self._arrivals[1][0] < keep_from:
            self._arrivals.popleft()

    def _update_lag(self, now: float) -> None:
        lag = 0.0
        utt = self._current
        if utt is not None:
            lag = max(0.0, self._received / SAMPLE_RATE - utt.covered_s)
        for arrived in self._pending_final_ends.values():
            lag = max(lag, now - arrived)
        self.stats.lag_s = round(lag, 3)
        self.stats.max_lag_s = max(self.stats.max_lag_s, self.stats.lag_s)
        self.stats.audio_s = round(self._received / SAMPLE_RATE, 3)

    def _emit_status(self) -> None:
        self._last_status_s = self._received / SAMPLE_RATE
        self._put(
            StatusEvent(
                "status",
                self.stats.lag_s,
                round(self._interval, 3),
                self.stats.last_final_latency_s,
            )
        )

    def _put(self, event: Event) -> None:
        if not self._ended:
            self._queue.put_nowait(event)

    def _end_events(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_END)


def _consume_exception(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning
