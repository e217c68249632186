"""Cut a continuous 16 kHz stream into utterances from per-window VAD probabilities.

Why a segmenter of its own rather than Silero's `get_speech_timestamps`: that works on
a whole file. A live stream needs decisions as the audio arrives, real audio around the
speech (Whisper drops a first syllable that starts at sample 0 and hallucinates on hard
cuts), a hard limit below Whisper's 30 s window, and memory that stays flat over hours.

Rules (all in `SegmenterOptions`):

* Hysteresis: speech starts when a window's probability reaches `start_threshold`; once
  in speech, a window below `end_threshold` starts a silence run that only a window at
  or above `start_threshold` cancels (Silero's own scheme: probabilities hovering in
  between neither keep an utterance alive forever nor chop it).
* A candidate must gather `min_speech_ms` of speech before it becomes an utterance
  (clicks, coughs and door slams shorter than that are dropped).
* An utterance ends after `min_silence_ms` of silence (`long_min_silence_ms` once it is
  longer than `long_utterance_s`, when that soft limit is set). Its audio runs from
  `pad_before_ms` before the first speech window (taken from a ring buffer of real
  audio, never overlapping the previous utterance) to `pad_after_ms` after the last one.
* At `max_utterance_s` the utterance is cut at the quietest point (lowest smoothed VAD
  probability, then lowest energy) of its last `cut_search_s` seconds, not blindly at
  the limit; the rest continues as a new utterance at once (`forced=True` on the first).

Times are seconds on the stream's own audio clock: sample k of everything fed so far is
at k / sample_rate. An utterance's `audio` is exactly the samples from `start_s` to
`end_s`. Memory is bounded by the current utterance (at most `max_utterance_s`) plus the
pre-speech ring buffer, however long the stream runs; finished audio is handed over in
`UtteranceEnded` and not kept.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import numpy as np

from engine.base import SAMPLE_RATE

__all__ = [
    "Segmenter",
    "SegmenterEvent",
    "SegmenterOptions",
    "UtteranceEnded",
    "UtteranceSnapshot",
    "UtteranceStarted",
]

EndReason = Literal["silence", "max_length", "flush", "turn"]


@dataclass(frozen=True)
class SegmenterOptions:
    """Thresholds and durations of the segmenter (defaults suit Silero VAD v6 at 16 kHz)."""

    sample_rate: int = SAMPLE_RATE
    start_threshold: float = 0.5
    end_threshold: float = 0.35
    min_speech_ms: int = 250
    min_silence_ms: int = 500
    pad_before_ms: int = 200
    pad_after_ms: int = 150
    max_utterance_s: float = 25.0
    #: How far back from the limit a forced cut looks for the quietest point.
    cut_search_s: float = 5.0
    #: Windows averaged (centred) when scoring a forced-cut point, so one low window in
    #: the middle of a word does not win over a real pause.
    cut_smoothing_windows: int = 3
    #: Soft limit (None: off): once an utterance is this long, a silence of
    #: `long_min_silence_ms` already ends it, so that long speech is cut at a natural
    #: pause (and decoded at once) before the hard `max_utterance_s` cut is needed.
    long_utterance_s: float | None = None
    long_min_silence_ms: int = 200

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        if not 0.0 <= self.end_threshold <= self.start_threshold <= 1.0:
            raise ValueError("need 0 <= end_threshold <= start_threshold <= 1")
        for name in (
            "min_speech_ms",
            "min_silence_ms",
            "pad_before_ms",
            "pad_after_ms",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_utterance_s <= 1.0:
            raise ValueError("max_utterance_s must be > 1 s")
        if not 0.0 < self.cut_search_s < self.max_utterance_s:
            raise ValueError("cut_search_s must be in (0, max_utterance_s)")
        if self.long_utterance_s is not None and not 0 < self.long_utterance_s < self.max_utterance_s:
            raise ValueError("long_utterance_s must be in (0, max_utterance_s)")
        if self.long_min_silence_ms < 0:
            raise ValueError("long_min_silence_ms must be >= 0")
        if self.cut_smoothing_windows < 1:
            raise ValueError("cut_smoothing_windows must be >= 1")

    def samples(self, ms: float) -> int:
        """Milliseconds to samples at this rate."""
        return round(ms * self.sample_rate / 1000.0)


@dataclass(frozen=True)
class UtteranceStarted:
    """Speech confirmed (after `min_speech_ms`); `start_s` includes the pre-roll padding."""

    id: int
    start_s: float


@dataclass(frozen=True, eq=False)  # holds an array: compare fields, not events
class UtteranceEnded:
    """An utterance is complete; `audio` (float32, 16 kHz) spans exactly start_s..end_s.

    `forced` is True when it was cut at `max_utterance_s` (the next utterance continues
    the same speech). `speech_ratio` is the share of its audio the VAD called speech,
    a signal for the hallucination guards.
    """

    id: int
    start_s: float
    end_s: float
    audio: np.ndarray
    forced: bool
    speech_ratio: float
    reason: EndReason = "silence"


@dataclass(frozen=True, eq=False)  # holds an array: compare fields, not events
class UtteranceSnapshot:
    """The current utterance so far, for partial decodes.

    `audio` is a read-only view (no copy); it stays valid and unchanged after later
    calls to the segmenter. It runs up to the last speech plus `pad_after_ms` (trailing
    silence that may still end the utterance is left out, as in the final audio).
    """

    id: int
    start_s: float
    end_s: float
    audio: np.ndarray
    speech_ratio: float


SegmenterEvent = UtteranceStarted | UtteranceEnded


class _State(Enum):
    IDLE = "idle"
    PENDING = "pending"  # speech seen, not yet min_speech_ms of it
    ACTIVE = "active"


@dataclass
class _Win:
    start: int  # stream sample of the window's first sample
    size: int
    prob: float
    rms: float

    @property
    def end(self) -> int:
        return self.start + self.size


class Segmenter:
    """Streaming utterance segmenter: `feed(window, prob)` per VAD window, get events back.

    One instance per connection, not thread-safe (the session owns it). Ids increase
    by one per utterance; every `UtteranceStarted` is followed by the `UtteranceEnded`
    of the same id before the next one starts.
    """

    def __init__(self, options: SegmenterOptions | None = None) -> None:
        self.options = opts = options or SegmenterOptions()
        self._sr = opts.sample_rate
        self._pad_before = opts.samples(opts.pad_before_ms)
        self._pad_after = opts.samples(opts.pad_after_ms)
        self._min_speech = opts.samples(opts.min_speech_ms)
        self._min_silence = opts.samples(opts.min_silence_ms)
        self._long = (
            None if opts.long_utterance_s is None else round(opts.long_utterance_s * self._sr)
        )
        self._long_min_silence = min(
            self._min_silence, opts.samples(opts.long_min_silence_ms)
        )
        self._max_samples = round(opts.max_utterance_s * self._sr)
        self._cut_search = round(opts.cut_search_s * self._sr)
        self._next_id = 0
        self.reset()

    # -- public API ---------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything, including the audio clock (ids keep counting up)."""
        self._clock = 0  # samples fed so far
        self._prev_end = 0  # end sample of the last utterance handed out
        self._ring: deque[np.ndarray] = deque()
        self._ring_len = 0
        self._clear_utterance()

    @property
    def clock_s(self) -> float:
        """Seconds of audio fed so far."""
        return self._clock / self._sr

    @property
    def in_utterance(self) -> bool:
        """True while a confirmed utterance is open."""
        return self._state is _State.ACTIVE

    @property
    def buffered_samples(self) -> int:
        """Samples of memory held (ring buffer plus utterance buffer capacity)."""
        return self._ring_len + self._buf.size

    def feed(self, window: np.ndarray, prob: float) -> list[SegmenterEvent]:
        """Consume one window of audio (normally 512 samples) with its speech probability."""
        window = np.asarray(window, dtype=np.float32).reshape(-1)
        n = window.size
        if n == 0:
            return []
        if not math.isfinite(prob):
            prob = 0.0
        events: list[SegmenterEvent] = []
        start = self._clock

        if self._state is _State.IDLE and prob >= self.options.start_threshold:
            self._open_candidate(start)

        if self._state is not _State.IDLE:
            rms = float(np.sqrt(np.mean(np.square(window, dtype=np.float64))))
            self._append(window)
            self._wins.append(_Win(start, n, float(prob), rms))
            self._track(start, n, prob)

        self._clock += n
        self._ring_push(window)

        if self._state is _State.PENDING:
            if self._speech_samples >= self._min_speech:
                self._state = _State.ACTIVE
                events.append(UtteranceStarted(self._id, self._utt_start / self._sr))
            elif self._in_silence and self._silence_run >= self._min_silence:
                self._clear_utterance()  # a click or a short noise: not an utterance
        if self._state is _State.ACTIVE:
            if self._in_silence and self._silence_run >= self._active_min_silence():
                events.append(
                    self._end(self._silence_start + self._pad_after, "silence")
                )
            elif self._clock - self._utt_start >= self._max_samples:
                events.extend(self._forced_cut())
        return events

    def flush(self) -> list[SegmenterEvent]:
        """End of stream: close an open utterance (reason "flush"); drop a candidate."""
        events: list[SegmenterEvent] = []
        if self._state is _State.ACTIVE:
            end = (
                self._silence_start + self._pad_after
                if self._in_silence
                else self._clock
            )
            events.append(self._end(end, "flush"))
        else:
            self._clear_utterance()
        return events

    def discard(self) -> None:
        """Drop the open utterance or candidate without ending it (a client's "clear"):
        its audio is never handed out, nor used as the next utterance's pre-roll."""
        self._clear_utterance()
        self._prev_end = self._clock

    @property
    def silence_s(self) -> float | None:
        """How long the silence now running in the open utterance has lasted (s);
        None while speech goes on or no utterance is open. The end-of-turn stage asks
        its model once this passes `turn_check_ms` (`streaming.turns`)."""
        if self._state is not _State.ACTIVE or not self._in_silence:
            return None
        return self._silence_run / self._sr

    def end_turn(self) -> list[SegmenterEvent]:
        """End the open utterance now because its turn is over (the turn model said so),
        at the same place the silence rule would have: last speech + `pad_after_ms`.
        Only during a silence whose padded end has arrived (`pending_end_s` set), so the
        final's audio is the one the speculative decode already has; else nothing."""
        if self.pending_end_s is None:
            return []
        return [self._end(self._silence_start + self._pad_after, "turn")]

    @property
    def pending_end_s(self) -> float | None:
        """Where the open utterance ends if the silence now running lasts to
        `min_silence_ms`, once that end (last speech + `pad_after_ms`) has been fed;
        None while speech goes on or no utterance is open.

        The final's audio would then be exactly `current().audio`, so a caller may start
        decoding it speculatively (and discard that if speech resumes).
        """
        if self._state is not _State.ACTIVE or not self._in_silence:
            return None
        end = self._silence_start + self._pad_after
        if self._clock < end:
            return None
        return end / self._sr

    def current(self) -> UtteranceSnapshot | None:
        """The open utterance's audio so far, or None when there is none (yet)."""
        if self._state is not _State.ACTIVE:
            return None
        end = self._speech_end_estimate()
        view = self._buf[: end - self._utt_start]
        view.flags.writeable = False
        return UtteranceSnapshot(
            self._id,
            self._utt_start / self._sr,
            end / self._sr,
            view,
            self._speech_ratio(self._utt_start, end),
        )

    # -- internals ----------------------------------------------------------------

    def _clear_utterance(self) -> None:
        self._state = _State.IDLE
        self._id = -1
        self._buf = np.zeros(0, dtype=np.float32)
        self._len = 0
        self._utt_start = 0
        self._wins: list[_Win] = []
        self._speech_samples = 0
        self._in_silence = False
        self._silence_run = 0
        self._silence_start = 0

    def _open_candidate(self, onset: int) -> None:
        """Start a candidate at `onset`, with pre-roll from the ring buffer."""
        pre = min(self._pad_before, onset - self._prev_end, self._ring_len)
        pre = max(pre, 0)
        self._state = _State.PENDING
        self._id = self._next_id
        self._next_id += 1
        self._utt_start = onset - pre
        self._buf = np.empty(max(self._sr, 2 * pre), dtype=np.float32)
        self._len = 0
        if pre:
            self._append(self._ring_tail(pre))

    def _track(self, start: int, n: int, prob: float) -> None:
        """Hysteresis bookkeeping for one window already appended."""
        opts = self.options
        if self._in_silence:
            if prob >= opts.start_threshold:
                self._in_silence = False
                self._silence_run = 0
            else:
                self._silence_run += n
        elif prob < opts.end_threshold:
            self._in_silence = True
            self._silence_start = start
            self._silence_run = n
        if not self._in_silence:
            self._speech_samples += n

    def _append(self, audio: np.ndarray) -> None:
        need = self._len + audio.size
        if need > self._buf.size:
            # A new array rather than resizing in place: snapshots handed out earlier are
            # views of the old one and must not change under the caller.
            grown = np.empty(max(need, 2 * self._buf.size), dtype=np.float32)
            grown[: self._len] = self._buf[: self._len]
            self._buf = grown
        self._buf[self._len : need] = audio
        self._len = need

    def _ring_push(self, window: np.ndarray) -> None:
        if self._pad_before == 0:
            return
        self._ring.append(window)
        self._ring_len += window.size
        while self._ring and self._ring_len - self._ring[0].size >= self._pad_before:
            self._ring_len -= self._ring.popleft().size

    def _ring_tail(self, n: int) -> np.ndarray:
        if n <= 0:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(list(self._ring))[-n:]

    def _active_min_silence(self) -> int:
        """Silence that ends the open utterance: shorter once it passed the soft limit."""
        if self._long is not None and self._silence_start - self._utt_start >= self._long:
            return self._long_min_silence
        return self._min_silence

    def _speech_end_estimate(self) -> int:
        if self._in_silence:
            return min(self._silence_start + self._pad_after, self._clock)
        return self._clock

    def _speech_ratio(self, start: int, end: int) -> float:
        if end <= start:
            return 0.0
        speech = 0
        for w in self._wins:
            if w.prob >= self.options.end_threshold:
                lo, hi = max(w.start, start), min(w.end, end)
                if hi > lo:
                    speech += hi - lo
        return min(1.0, speech / (end - start))

    def _end(self, end: int, reason: EndReason) -> UtteranceEnded:
        end = max(self._utt_start, min(end, self._clock))
        audio = self._buf[: end - self._utt_start].copy()
        event = UtteranceEnded(
            id=self._id,
            start_s=self._utt_start / self._sr,
            end_s=end / self._sr,
            audio=audio,
            forced=reason == "max_length",
            speech_ratio=self._speech_ratio(self._utt_start, end),
            reason=reason,
        )
        self._prev_end = end
        self._clear_utterance()
        return event

    def _cut_point(self) -> int:
        """Stream sample of the quietest point in the last `cut_search_s` seconds."""
        lo = self._clock - self._cut_search
        idx = [i for i, w in enumerate(self._wins) if w.start >= lo]
        if not idx:
            return self._clock
        probs = np.array([w.prob for w in self._wins])
        rms = np.array([w.rms for w in self._wins])
        k = self.options.cut_smoothing_windows
        kernel = np.ones(k) / k
        smooth_p = np.convolve(
            np.pad(probs, k // 2, mode="edge"), kernel, mode="valid"
        )[: len(probs)]
        smooth_e = np.convolve(np.pad(rms, k // 2, mode="edge"), kernel, mode="valid")[
            : len(rms)
        ]
        cand = np.array(idx)
        best_p = smooth_p[cand].min()
        near = cand[smooth_p[cand] <= best_p + 0.05]
        best = int(near[np.argmin(smooth_e[near])])
        w = self._wins[best]
        return w.start + w.size // 2

    def _forced_cut(self) -> list[SegmenterEvent]:
        """Close the utterance at the quietest recent point; what follows, if it holds
        speech, continues at once as the next utterance."""
        cut = min(max(self._cut_point(), self._utt_start + 1), self._clock)
        rest = self._buf[cut - self._utt_start : self._len].copy()
        rest_wins = [w for w in self._wins if w.end > cut]
        in_silence, silence_run, silence_start = (
            self._in_silence,
            self._silence_run,
            self._silence_start,
        )
        events: list[SegmenterEvent] = [self._end(cut, "max_length")]
        if in_silence and silence_start <= cut:
            # Nothing but silence after the cut: no new utterance; the ring buffer still
            # holds the recent audio for the next onset's pre-roll.
            return events
        self._state = _State.ACTIVE
        self._id = self._next_id
        self._next_id += 1
        self._utt_start = cut
        self._buf = np.empty(max(self._sr, 2 * rest.size), dtype=np.float32)
        self._len = 0
        self._append(rest)
        self._wins = rest_wins
        self._speech_samples = self._min_speech
        self._in_silence, self._silence_run, self._silence_start = (
            in_silence,
            silence_run,
            silence_start,
        )
        events.append(UtteranceStarted(self._id, self._utt_start / self._sr))
        return events
