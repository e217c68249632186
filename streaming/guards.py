"""Guards against Whisper's two classic failure modes in streaming: phantom text on
silence/noise and repetition loops. All functions are pure.

Why both are needed even behind a VAD: Whisper was trained on subtitles, so on
silence, breath or noise it writes what subtitle files contain at such moments
("Thank you.", "Thanks for watching!", "[BLANK_AUDIO]", "Subtitles by the Amara.org
community"); and an autoregressive decoder that starts repeating itself keeps doing so
(". . . . ." or one sentence over and over). A streaming policy that commits such text
and feeds it back as the prompt makes the loop permanent, so loops are cut before
anything is committed or used as a prompt.

The loop rules themselves live in engine/quality.py (one module decides what a loop
is, for the engine's stop and retry and for these guards); here they get the guards'
thresholds (`GuardOptions.loop`). `compression_ratio` is
Whisper's loop detector: gzip-compressible text (ratio above 2.4) is repetitive. It is calibrated for the text of one decode of at most 30 s
(a few hundred characters; ordinary prose of several thousand characters compresses
past 2.4 too), which is what the streaming pipeline judges. It needs a fair amount of
text to fire, so an n-gram check catches short loops in partials as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.quality import LoopRule, compression_ratio, has_loop, normalize_text, strip_loop

__all__ = [
    "CREDIT_PHRASES",
    "PHANTOM_PHRASES",
    "GuardOptions",
    "compression_ratio",
    "drop_reason",
    "is_repetition_loop",
    "normalize_text",
    "strip_repetition",
]

#: Short phrases Whisper produces on silence/noise that are also things people say,
#: compared after `normalize_text`. Dropped unless the audio clearly held speech.
PHANTOM_PHRASES: frozenset[str] = frozenset(
    {
        "you",
        "thank you",
        "thank you very much",
        "thank you so much",
        "thank you for watching",
        "thanks for watching",
        "thanks for watching and see you next time",
        "thank you for listening",
        "thanks",
        "thanks for listening",
        "please subscribe",
        "please like and subscribe",
        "like and subscribe",
        "subscribe",
        "see you next time",
        "see you in the next video",
        "bye",
        "bye bye",
        "goodbye",
        "the end",
        "so",
        "okay",
        "ok",
        "oh",
        "uh",
        "um",
        "hmm",
        "mm",
        "huh",
        "i",
        "the",
        "silence",
        "blank audio",
        "music",
        "applause",
        "laughter",
        "no speech",
        "inaudible",
        # Common non-English phantoms of multilingual models.
        "merci",
        "danke",
        "gracias",
        "obrigado",
        "grazie",
        "ご視聴ありがとうございました",
        "продолжение следует",
        "спасибо за внимание",
    }
)

#: Subtitle credits: never real speech in a live microphone stream. A normalised text
#: that starts with one of these is dropped whatever the confidence.
CREDIT_PHRASES: tuple[str, ...] = (
    "subtitles by",
    "subtitled by",
    "subtitles made by",
    "captions by",
    "captioning by",
    "closed captioning by",
    "closed captions by",
    "transcribed by",
    "transcription by",
    "translated by",
    "translation by",
    "amara org",
    "sous titres réalisés par",
    "sous titrage",
    "untertitel der amara org",
    "untertitel im auftrag",
    "untertitelung",
    "subtítulos realizados por",
    "subtítulos por",
    "legendas pela comunidade",
    "www ",
    "http",
)

# Bracketed sound tags: [Music], (silence), [BLANK_AUDIO], *applause*, ♪ ... ♪
_TAG_RE = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|<[^>]*>|[♪♫♩♬🎵🎶]")


@dataclass(frozen=True)
class GuardOptions:
    """Thresholds of `drop_reason`; the defaults follow Whisper's own where it has one."""

    #: What counts as a loop (engine.quality's rule: Whisper's compression ratio, repeats).
    loop: LoopRule = LoopRule()
    #: Whisper's `logprob_threshold` and `no_speech_threshold` (used together, as Whisper does).
    logprob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    #: A decode this unsure is dropped whatever else is known.
    very_low_logprob: float = -2.0
    #: Below this share of VAD speech, text is taken for a hallucination.
    min_speech_ratio: float = 0.1
    #: A phantom phrase is kept only with at least this much speech and confidence.
    phantom_keep_speech_ratio: float = 0.5
    phantom_keep_logprob: float = -0.5
    #: With speech ratio below this, a low-logprob decode is dropped.
    weak_speech_ratio: float = 0.5


DEFAULT_OPTIONS = GuardOptions()


def _strip_tags(text: str) -> str:
    return _TAG_RE.sub(" ", text)


def _is_credit(norm: str) -> bool:
    # Prefix only: "the book was translated by her" mid-sentence is real speech.
    return norm.startswith(CREDIT_PHRASES) or "amara org" in norm


def _is_phantom_phrase(norm: str) -> bool:
    if norm in PHANTOM_PHRASES:
        return True
    # The same phantom phrase several times over ("thank you thank you").
    words = norm.split()
    for p in range(1, len(words) // 2 + 1):
        if len(words) % p == 0 and words == words[:p] * (len(words) // p):
            return " ".join(words[:p]) in PHANTOM_PHRASES
    return False


_compression_ratio = compression_ratio  # reachable where a parameter shadows the name


def is_repetition_loop(text: str, options: GuardOptions = DEFAULT_OPTIONS) -> bool:
    """True if the text is a decoder loop (engine.quality.has_loop with these thresholds)."""
    return has_loop(text, options.loop)


def strip_repetition(text: str, options: GuardOptions = DEFAULT_OPTIONS) -> str:
    """Cut a loop at the end of the text, keeping one copy (engine.quality.strip_loop)."""
    return strip_loop(text, options.loop)


def drop_reason(
    text: str,
    avg_logprob: float | None = None,
    compression_ratio: float | None = None,
    speech_ratio: float | None = None,
    *,
    no_speech_prob: float | None = None,
    options: GuardOptions = DEFAULT_OPTIONS,
) -> str | None:
    """Why a decode should not be shown, or None to keep it.

    Reasons: "empty", "non_speech_tag", "credits", "repetition", "no_speech",
    "low_confidence", "phantom". Signals that are None (a remote engine reports no
    logprob) are simply not used. Run `strip_repetition` first if a loop at the end
    should be cut rather than the whole text dropped.
    """
    raw = text.strip()
    if not normalize_text(raw):
        return "non_speech_tag" if _TAG_RE.search(raw) else "empty"
    untagged = normalize_text(_strip_tags(raw))
    if not untagged:
        return "non_speech_tag"
    if _is_credit(untagged):
        return "credits"
    ratio = (
        compression_ratio if compression_ratio is not None else _compression_ratio(raw)
    )
    if ratio > options.loop.max_compression_ratio or is_repetition_loop(raw, options):
        return "repetition"
    if speech_ratio is not None and speech_ratio < options.min_speech_ratio:
        return "no_speech"
    if (
        no_speech_prob is not None
        and avg_logprob is not None
        and no_speech_prob > options.no_speech_threshold
        and avg_logprob < options.logprob_threshold
    ):
        return "no_speech"
    if avg_logprob is not None and (
        avg_logprob < options.very_low_logprob
        or (
            avg_logprob < options.logprob_threshold
            and speech_ratio is not None
            and speech_ratio < options.weak_speech_ratio
        )
    ):
        return "low_confidence"
    if _is_phantom_phrase(untagged):
        strong = (
            speech_ratio is not None
            and speech_ratio >= options.phantom_keep_speech_ratio
            and (avg_logprob is None or avg_logprob >= options.phantom_keep_logprob)
            and (no_speech_prob is None or no_speech_prob < options.no_speech_threshold)
        )
        if not strong:
            return "phantom"
    return None

