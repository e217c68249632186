"""A live stream's knobs (`SessionOptions`, from settings and the client's choices) and
its running figures (`SessionStats`); the session itself is `streaming.session`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streaming.segmenter import SegmenterOptions
from streaming.turns import EagernessName, TurnDetection, eagerness_of

__all__ = ["SessionOptions", "SessionStats"]


@dataclass
class SessionOptions:
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    min_silence_ms: int = 500
    partial_interval_s: float = 0.6
    vad_threshold: float = 0.5
    max_utterance_s: float = 25.0
    use_prompt: bool = True
    # -- finer knobs (not in Settings) ------------------------------------------------
    #: Utterance audio (pre-roll included) before the first partial decode.
    first_partial_s: float = 0.5
    #: Ceiling of the adaptive partial interval; 0 disables partials.
    max_partial_interval_s: float = 3.0
    #: Start the final decode at the first silence (see module doc).
    speculative_final: bool = True
    #: Characters of previous final text used as the decoder prompt.
    prompt_chars: int = 200
    #: Seconds between status events while audio flows (also sent after every final).
    status_interval_s: float = 2.0
    #: Soft utterance limit: past this length a pause of `long_min_silence_ms` ends the
    #: utterance (long speech is cut at a natural pause, well before the forced cut at
    #: `max_utterance_s`, whose final can only come after the limit is reached). None: off.
    long_utterance_s: float | None = 12.0
    long_min_silence_ms: int = 200
    #: The final decode (whole utterance, full context) is authoritative: where it
    #: disagrees with words committed by partials, it wins (counted in
    #: `stats.revisions`). False keeps committed words and appends the final's tail
    #: (committed text then never changes, at some cost in accuracy).
    final_overrides_committed: bool = True
    #: Decodes in flight per engine (all sessions) above which no partial starts
    #: (`streaming.scheduler`); None: by the engine's device (2 on CPU).
    max_decodes_in_flight: int | None = None
    #: The caller's decoder prompt (a realtime client's `prompt`: names, spelling, style)
    #: for every decode of this stream, ahead of the previous text of a continuation.
    prompt: str | None = None
    #: What ends an utterance: `silence` (`min_silence_ms` of it) or `semantic` (the
    #: turn model asked after `turn_check_ms` of silence; `streaming.turns`).
    turn_detection: TurnDetection = "silence"
    #: Semantic turns only: how soon a pause ends the turn (OpenAI's `eagerness`).
    eagerness: EagernessName = "auto"
    #: Semantic turns only: silence after which the turn model is asked.
    turn_check_ms: int = 200
    #: Semantic turns only: a "finished" answer also needs the pause's speculative final
    #: to end a sentence (`engine.formats.ends_sentence`); otherwise the utterance stays
    #: open until speech resumes or the eagerness' silence passes. Measured in
    #: BENCHMARKS.md (issue 20): the model hears phrase ends ("... to decrease your")
    #: as finished; the decode's missing full stop catches some of them.
    turn_text_check: bool = True
    #: ... waiting at most this long for that decode (about one decode on a 2-core CPU);
    #: past it the model's answer alone ends the turn, as without the check.
    turn_text_wait_s: float = 0.3
    #: Real audio kept after the last speech window in an utterance's audio. The
    #: speculative final starts once it has arrived, so it is a floor of a final's
    #: latency; 50 ms gave the same words on 74 short utterances (the encoder window adds
    #: >= 1 s of silence anyway), its gain is to be measured quietly (BENCHMARKS.md, issue 20).
    pad_after_ms: int = 150
    #: Finals carry their words with times and probabilities (`TranscriptEvent.words`,
    #: session time): the final's decode asks the engine for word times.
    word_times: bool = False
    #: Partials carry them too (with `word_times`): each partial's decode asks for them,
    #: an aligning pass per partial (BENCHMARKS.md, word times), so off by default.
    partial_words: bool = False
    #: Finals carry a speaker label (`TranscriptEvent.speaker`, "Speaker 1"...): each
    #: final's voice is embedded and assigned online (`streaming.speakers`).
    speakers: bool = False
    #: Finals carry the decoder's token log-probabilities (`TranscriptEvent.logprobs`:
    #: a realtime client's `include: ["item.input_audio_transcription.logprobs"]`).
    logprobs: bool = False

    def effective_min_silence_ms(self) -> int:
        """Silence that ends an utterance whatever was said: `min_silence_ms`, or with
        semantic turns the eagerness' fallback (the model ends it sooner when it can)."""
        if self.turn_detection == "semantic":
            return eagerness_of(self.eagerness).max_silence_ms
        return self.min_silence_ms

    @classmethod
    def from_settings(cls, settings) -> "SessionOptions":  # settings.Settings
        return cls(
            language=(getattr(settings, "language", "") or None),
            min_silence_ms=int(getattr(settings, "min_silence_ms", 500)),
            partial_interval_s=float(getattr(settings, "partial_interval_s", 0.6)),
            vad_threshold=float(getattr(settings, "vad_threshold", 0.5)),
            turn_detection=getattr(settings, "turn_detection", "silence") or "silence",
            word_times=bool(getattr(settings, "live_word_times", False)),
            partial_words=bool(getattr(settings, "live_partial_word_times", False)),
            speakers=bool(getattr(settings, "live_speakers", False)),
        )

    def segmenter_options(self) -> SegmenterOptions:
        start = min(max(self.vad_threshold, 0.05), 0.95)
        return SegmenterOptions(
            start_threshold=start,
            end_threshold=max(0.0, start - 0.15),
            min_silence_ms=self.effective_min_silence_ms(),
            max_utterance_s=self.max_utterance_s,
            cut_search_s=min(5.0, self.max_utterance_s / 2),
            long_utterance_s=(
                self.long_utterance_s
                if self.long_utterance_s is not None and 0 < self.long_utterance_s < self.max_utterance_s
                else None
            ),
            long_min_silence_ms=self.long_min_silence_ms,
            pad_after_ms=self.pad_after_ms,
        )


@dataclass
class SessionStats:
    lag_s: float = 0.0
    max_lag_s: float = 0.0
    partials: int = 0
    finals: int = 0
    revisions: int = 0
    errors: int = 0
    dropped: int = 0  # decodes dropped by the guards
    last_final_latency_s: float | None = None
    partial_interval_s: float = 0.6
    audio_s: float = 0.0  # audio received (16 kHz seconds)
    turn_checks: int = 0  # turn model questions (semantic turns)
    turn_ends: int = 0  # utterances the turn model ended before the silence rule
    turn_wait_s: float = 0.0  # wall time spent waiting for the turn model
    turn_text_holds: int = 0  # "finished" answers held open: the speculative final ends no sentence
    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)
