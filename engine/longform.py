"""Audio longer than Whisper's 30 s window: cut at quiet points, decode concurrently, join.

Cutting inside pauses (never at blind 30 s marks) means no word straddles a cut, so the
pieces can be joined end to end with no overlap to reconcile: nothing is duplicated or
dropped at the joins. All pieces go to the engine at once and vLLM batches them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

import numpy as np

from engine.base import PRIORITY_BACKGROUND, SAMPLE_RATE, WINDOW_S, DecodeRequest, Segment, Transcription, WindowDecoder

log = logging.getLogger(__name__)

FRAME_S = 0.02
#: A long file's windows in the engine at once. All ~500 pieces of a 4-hour file at once
#: cost ~0.9 GB of encoder features on top of the audio, and gain nothing once the batch
#: is full; live finals still go first (priority), so this only bounds memory.
MAX_WINDOWS_IN_FLIGHT = 16


@dataclass(frozen=True)
class SplitOptions:
    #: 8-19 s pieces (each fills the encoder's 20 s bucket) measured ×1.3-1.5 faster here but
    #: lost words on the untuned file (WER 0.14 -> 0.21, issue 21, BENCHMARKS.md): not kept.
    max_chunk_s: float = 29.0  # a little under 30 s so the decoder sees the whole piece
    min_chunk_s: float = 12.0  # search for the quietest point between min and max
    quiet_window_s: float = 0.4  # a cut wants a pause at least this long around it
    silence_dbfs: float = -55.0  # pieces quieter than this throughout are not decoded
    trim_margin_s: float = 0.3  # quiet kept before the first and after the last sound of a piece
    #: Sound is a frame above `silence_dbfs`. Set, sound must also be within this many dB of
    #: the piece's loudest frame and a piece whose mean is below `silence_dbfs` is skipped:
    #: the rule before issue 21, which dropped a quiet speaker (FLEURS clips peaking at
    #: -49 dBFS) next to a loud one, or alone in a piece.
    peak_relative_db: float | None = None


@dataclass(frozen=True)
class LongformOptions:
    """How a long file is decoded. The named variants are what `python -m bench.longform_profile`
    measures one against another; the defaults are the measured choice."""

    split: SplitOptions = SplitOptions()
    #: A window that stopped early is decoded again from the pause before the lost speech
    #: ("stretch", `engine.coverage.redo_from`) where it can be, else in two halves ("halves").
    redo: str = "stretch"
    #: A window's decode may not end before its timestamps reach its last speech (less the
    #: coverage check's own tolerance): Whisper goes on with the next speaker in the same
    #: pass instead of being decoded again (`DecodeRequest.end_not_before`).
    keep_decoding: bool = True
    #: Pieces go to the engine longest first, so the last ones to start are short and the
    #: batch does not end with a long piece decoding alone (the decode time of 11 pieces
    #: of 12-28 s on 8 slots: 43 -> 37 piece-seconds on the LJ file).
    longest_first: bool = True

    @classmethod
    def named(cls, name: str) -> LongformOptions:
        """A variant by name: `baseline` (the defaults), or one lever changed alone."""
        before = SplitOptions(max_chunk_s=29.0, min_chunk_s=12.0, peak_relative_db=40.0)
        variants = {
            "baseline": cls(),
            "before": cls(split=before, redo="halves", keep_decoding=False, longest_first=False),  # issue 21's starting point
            "stop-early": cls(keep_decoding=False, longest_first=False),  # the default before both
            "in-order": cls(longest_first=False),  # pieces in time order: `longest_first` alone
            "quiet-kept": cls(split=replace(before, peak_relative_db=None), redo="halves", keep_decoding=False, longest_first=False),
            "stretch-redo": cls(split=before, redo="stretch", keep_decoding=False, longest_first=False),
            "pieces-19s": cls(
                split=replace(before, max_chunk_s=19.0, min_chunk_s=8.0), redo="halves", keep_decoding=False, longest_first=False
            ),
            "all-19s": cls(split=SplitOptions(max_chunk_s=19.0, min_chunk_s=8.0), keep_decoding=False, longest_first=False),
            "keep-19s": cls(split=SplitOptions(max_chunk_s=19.0, min_chunk_s=8.0)),  # 19 s pieces with today's levers
            "all-14s": cls(split=SplitOptions(max_chunk_s=14.0, min_chunk_s=6.0), keep_decoding=False, longest_first=False),
        }
        if name not in variants:
            raise ValueError(f"unknown long-form variant {name!r}: one of {', '.join(variants)}")
        return variants[name]


#: Frames whose energy is computed at once (~1.3 MB of float32 working memory).
_ENERGY_BLOCK_FRAMES = 1024


def _frame_energy_db(audio: np.ndarray) -> np.ndarray:
    """dB of each 20 ms frame, computed block by block in float32.

    A 4-hour file is 230 M samples: a float64 copy and its square would be two ~1.8 GB
    arrays; blocks of a thousand frames keep the working memory near a megabyte.
    """
    hop = int(FRAME_S * SAMPLE_RATE)
    n = len(audio) // hop
    frames = np.asarray(audio[: n * hop], dtype=np.float32).reshape(n, hop)
    mean_square = np.empty(n, dtype=np.float32)
    for i in range(0, n, _ENERGY_BLOCK_FRAMES):
        block = frames[i : i + _ENERGY_BLOCK_FRAMES]
        np.einsum("ij,ij->i", block, block, out=mean_square[i : i + len(block)])
    mean_square /= np.float32(hop)
    return (10 * np.log10(mean_square.astype(np.float64) + 1e-12)).astype(np.float32)


def is_silent(audio: np.ndarray, silence_dbfs: float = SplitOptions.silence_dbfs) -> bool:
    """True when not one 20 ms frame is louder than `silence_dbfs`.

    Whisper invents text for digital silence ("you", "Thank you."); the long-form path
    already skips silent pieces, and short requests get the same rule so a silent clip
    gives empty text whichever path it takes. A single frame of sound is enough to decode.
    """
    energy = _frame_energy_db(np.asarray(audio, dtype=np.float32))
    return len(energy) == 0 or float(energy.max()) < silence_dbfs


def find_cuts(audio: np.ndarray, options: SplitOptions = SplitOptions()) -> list[int]:
    """Sample positions where to cut: the middle of the quietest stretch in each search range."""
    energy = _frame_energy_db(audio)
    smooth_frames = max(1, int(options.quiet_window_s / FRAME_S))
    # The loudest frame of a window: a cut is only as quiet as the noisiest moment around it.
    padded = np.pad(energy, (smooth_frames // 2, smooth_frames - smooth_frames // 2 - 1), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, smooth_frames)
    loudness = windows.max(axis=1)
    cuts: list[int] = []
    start_frame = 0
    total_frames = len(energy)
    max_frames = int(options.max_chunk_s / FRAME_S)
    min_frames = int(options.min_chunk_s / FRAME_S)
    while total_frames - start_frame > max_frames:
        lo, hi = start_frame + min_frames, start_frame + max_frames
        segment = loudness[lo:hi]
        # Prefer the latest among (nearly) equally quiet frames: fewer, fuller chunks.
        best = lo + int(np.flatnonzero(segment <= segment.min() + 1.0)[-1])
        cuts.append(best * int(FRAME_S * SAMPLE_RATE))
        start_frame = best
    return cuts


#: A frame this much above the piece's noise floor (its 10th percentile frame) is sound.
FLOOR_MARGIN_DB = 6.0


def _sound_threshold(energy: np.ndarray, options: SplitOptions) -> float:
    """dB above which a 20 ms frame counts as sound (see `SplitOptions.peak_relative_db`).

    Above `silence_dbfs`, or above the piece's own noise floor where that is lower: a
    quiet speaker (FLEURS clips peak at -49 dBFS, most of their frames below -55) over a
    quieter floor is sound, and only the floor itself is trimmed."""
    if len(energy) == 0:
        return options.silence_dbfs
    if options.peak_relative_db is None:
        return min(options.silence_dbfs, float(np.percentile(energy, 10)) + FLOOR_MARGIN_DB)
    return max(options.silence_dbfs, float(energy.max()) - options.peak_relative_db)


def _sounding_span(piece: np.ndarray, options: SplitOptions) -> tuple[int, int]:
    """Sample range from the first to the last frame that sounds, plus a margin.

    Whisper (without OpenAI's timestamp rules, which vLLM does not apply) puts the first
    segment at 0.00 of its window however much quiet comes first, so trimming long
    quiet edges keeps segment times honest and spends no decode on nothing.
    """
    energy = _frame_energy_db(piece)
    if len(energy) == 0:
        return 0, len(piece)
    sounding = np.flatnonzero(energy > _sound_threshold(energy, options))
    if len(sounding) == 0:
        return 0, len(piece)
    hop = int(FRAME_S * SAMPLE_RATE)
    margin = int(options.trim_margin_s * SAMPLE_RATE)
    return max(0, sounding[0] * hop - margin), min(len(piece), (sounding[-1] + 1) * hop + margin)


def split_audio(audio: np.ndarray, options: SplitOptions = SplitOptions()) -> list[tuple[int, np.ndarray]]:
    """(start sample, piece) pairs covering the sound; silent pieces and quiet edges are left out."""
    bounds = [0, *find_cuts(audio, options), len(audio)]
    pieces = []
    for start, end in zip(bounds, bounds[1:]):
        piece = audio[start:end]
        if len(piece) == 0:
            continue
        if options.peak_relative_db is None:
            if is_silent(piece, options.silence_dbfs):
                continue
        elif 20 * np.log10(np.sqrt(np.mean(piece.astype(np.float64) ** 2)) + 1e-12) < options.silence_dbfs:
            continue
        lo, hi = _sounding_span(piece, options)
        pieces.append((int(start + lo), piece[lo:hi]))
    return pieces


async def transcribe_any(engine: WindowDecoder, request: DecodeRequest) -> Transcription:
    """Validated audio of any length to text, the same way for every engine.

    Over 30 s: the long-form path. Silent audio: empty text without a decode (Whisper
    invents "you" for it). Otherwise one window. The engine's own `transcribe_window`
    does the decoding; this is only the choice of path, kept in one place.
    """
    if request.duration > WINDOW_S:
        # A long file's pieces wait behind live finals and short requests.
        return await transcribe_long(engine, request.with_(priority=max(request.priority, PRIORITY_BACKGROUND)))
    if is_silent(request.audio):
        result = _silent_result(engine, request)
    else:
        result = await decode_covered(engine, request)
    if request.progress is not None:
        request.progress(result.duration, result.duration)
    return result


def _pieces_and_marks(audio: np.ndarray, options: LongformOptions) -> tuple[list[tuple[int, np.ndarray]], list[float | None]]:
    """The pieces of a long file and, where windows decode to their last speech, each one's mark."""
    pieces = split_audio(audio, options.split)
    marks = end_marks([p for _, p in pieces]) if options.keep_decoding else [None] * len(pieces)
    return pieces, marks


def _silent_result(engine: WindowDecoder, request: DecodeRequest) -> Transcription:
    language = request.language or ("en" if not engine.info.multilingual else None)
    return Transcription("", language, request.duration)


async def transcribe_long(
    engine: WindowDecoder, request: DecodeRequest, options: LongformOptions = LongformOptions()
) -> Transcription:
    """Transcribe audio of any length with segment times, batching all pieces at once.

    Every piece is the request with its own audio (`request.with_(audio=piece)`), so the
    caller's options reach each window unchanged; only the first piece keeps the prompt.
    Pieces go to the engine longest first (`LongformOptions.longest_first`), each asked to
    decode to its last speech (`end_marks`), and are joined in time order.
    """
    audio, progress = request.audio, request.progress
    duration = request.duration
    # Seconds on a 4-hour file: off the event loop. The marks are read here, before any
    # piece goes to the engine, so the pieces reach it in the order chosen below.
    pieces, marks = await asyncio.to_thread(_pieces_and_marks, audio, options)
    if not pieces:
        return _silent_result(engine, request)
    language = request.language
    if language is None and engine.info.multilingual:
        language = await engine.detect_language(pieces[0][1], request.priority)
        log.info("detected language %s", language)
    done = 0.0
    if progress is not None:
        progress(0.0, duration)

    in_flight = asyncio.Semaphore(MAX_WINDOWS_IN_FLIGHT)

    async def decode(start: int, piece: np.ndarray, first: bool, mark: float | None) -> Transcription:
        nonlocal done
        window = request.with_(
            audio=piece, language=language, prompt=request.prompt if first else None, timestamps=True, progress=None,
            end_not_before=mark,
        )
        async with in_flight:
            result = await decode_covered(engine, window, start / SAMPLE_RATE, options=options)
        done += len(piece) / SAMPLE_RATE
        if progress is not None:
            progress(min(done, duration), duration)
        return result

    order = list(range(len(pieces)))
    if options.longest_first:
        order.sort(key=lambda i: -len(pieces[i][1]))
    done_in_order = await asyncio.gather(*(decode(*pieces[i], i == 0, marks[i]) for i in order))
    results = [r for _, r in sorted(zip(order, done_in_order), key=lambda pair: pair[0])]
    segments: list[Segment] = [s for r in results for s in r.segments]
    logprobs = [r.avg_logprob for r in results if r.avg_logprob is not None]
    text = " ".join(s.text for s in segments)
    if progress is not None:
        progress(duration, duration)
    return Transcription(
        text=text,
        language=language,
        duration=duration,
        segments=segments,
        avg_logprob=float(np.mean(logprobs)) if logprobs else None,
        compression_ratio=max((r.compression_ratio or 0.0) for r in results),
        words=[w for r in results for w in r.words],
        logprobs=[t for r in results for t in r.logprobs],
    )


# -- coverage: every stretch of speech comes back as text (engine/coverage.py) ----------

#: How often a window that lost speech is halved again (2: at most 4 parts, ~7 s each).
MAX_COVERAGE_DEPTH = 2
#: A window shorter than this is not halved (each half needs a few words to judge).
MIN_HALVED_S = 6.0


def _sounding_spans(audio: np.ndarray, offset: float, options: SplitOptions = SplitOptions()) -> list[tuple[float, float]]:
    """Frames of sound, as spans: a cheap superset of speech.

    A decode that passes the coverage check against these passes it against the VAD's
    speech too (more seconds to fill, fewer covered), so the VAD runs only when this fails.
    """
    energy = _frame_energy_db(audio)
    if len(energy) == 0:
        return []
    loud = energy > _sound_threshold(energy, options)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    return [(offset + a * FRAME_S, offset + b * FRAME_S) for a, b in zip(edges[::2], edges[1::2])]


#: Seconds at a window's end the VAD listens to for the last speech (`_end_not_before`):
#: a piece ends within a pause's width of its last sound, so a speaking window's last
#: speech lies well inside them; ~25 ms of Silero per window.
END_SPEECH_SEARCH_S = 5.0


#: Windows whose ends the VAD reads at once (`end_marks`): ~10 MB of float32 at a time.
_MARK_BATCH = 32


def end_marks(audios: list[np.ndarray]) -> list[float | None]:
    """Seconds into each window before which its decode may not end: the end of the
    speech the VAD hears in its last `END_SPEECH_SEARCH_S`, less the stretch the coverage
    check itself lets pass (a segment covers `COLLAR_S` around itself, and uncovered
    speech shorter than `MIN_HOLE_S` is timestamp jitter), so a decode that ends where it
    may also passes the check. None where those seconds hold no speech: a window that ends
    in music or noise is not made to go on into it (tiny.en then says "[inaudible]" until
    its token budget runs out: the bench's speech-and-noise file), and the coverage check
    catches speech lost before it. The VAD runs batched over the windows' ends."""
    from engine.coverage import COLLAR_S, MIN_HOLE_S
    from engine.vad import speech_regions_of

    search = int(END_SPEECH_SEARCH_S * SAMPLE_RATE)
    marks: list[float | None] = []
    for i in range(0, len(audios), _MARK_BATCH):
        group = audios[i : i + _MARK_BATCH]
        tail_starts = [max(0, len(a) - search) for a in group]
        for tail_start, regions in zip(tail_starts, speech_regions_of([a[t:] for a, t in zip(group, tail_starts)])):
            until = tail_start / SAMPLE_RATE + regions[-1][1] - (COLLAR_S + MIN_HOLE_S) if regions else 0.0
            marks.append(until if until > 0 else None)
    return marks


def _end_not_before(audio: np.ndarray) -> float | None:
    """`end_marks` of one window."""
    return end_marks([audio])[0]


def _middle_cut(audio: np.ndarray) -> int:
    """The quietest 0.4 s stretch between 30 % and 70 % of the window (sample index)."""
    energy = _frame_energy_db(audio)
    width = max(1, int(SplitOptions.quiet_window_s / FRAME_S))
    lo, hi = int(len(energy) * 0.3), int(len(energy) * 0.7)
    loudness = np.array([energy[max(0, i - width // 2) : i + width // 2 + 1].max() for i in range(lo, hi)])
    return (lo + int(np.argmin(loudness))) * int(FRAME_S * SAMPLE_RATE)


def _joined(parts: list[Transcription], language: str | None, duration: float) -> Transcription:
    segments = sorted((s for r in parts for s in r.segments), key=lambda s: s.start)
    logprobs = [r.avg_logprob for r in parts if r.avg_logprob is not None]
    return Transcription(
        text=" ".join(s.text for s in segments),
        language=language,
        duration=duration,
        segments=segments,
        avg_logprob=float(np.mean(logprobs)) if logprobs else None,
        compression_ratio=max((r.compression_ratio or 0.0) for r in parts) if parts else None,
        words=[w for r in parts for w in r.words],  # parts are in time order
        logprobs=[t for r in parts for t in r.logprobs],
    )


async def decode_covered(
    engine: WindowDecoder,
    request: DecodeRequest,
    offset: float = 0.0,
    depth: int = 0,
    options: LongformOptions = LongformOptions(),
) -> Transcription:
    """One window decoded, then checked against what the VAD heard; lost speech decoded again.

    Whisper may stop early (end-of-text while speech remains). Where all the lost
    speech follows the last segment after a pause (`engine.coverage.redo_from`), only
    the audio from that pause on is decoded again and the text before it is kept.
    Otherwise, where the text is far too short for the speech, or segment times leave
    speech uncovered between segments, the window is cut at its quietest middle point
    and both halves are decoded on their own (at most `MAX_COVERAGE_DEPTH` times, so it
    cannot loop). Speech that still comes back empty
    becomes a gap segment that says so. The check costs nothing when the text is
    complete (an energy test); the VAD and any extra decode run only on a suspect window.
    """
    from engine.coverage import gap_segment, has_times, lost_speech, redo_from, speech_after_words, word_count

    audio, duration = request.audio, request.duration
    if depth > 0 and options.keep_decoding and request.timestamps:  # a redone part: its own mark
        request = request.with_(end_not_before=await asyncio.to_thread(_end_not_before, audio))
    result = await engine.transcribe_window(request, offset=offset)
    start, end = offset, offset + duration
    if not lost_speech(result.text, result.segments, _sounding_spans(audio, offset, options.split), start, end):
        return result
    from engine.vad import speech_regions  # onnxruntime: loaded on the first suspect window

    regions = [(a + offset, b + offset) for a, b in await asyncio.to_thread(speech_regions, audio)]
    lost = lost_speech(result.text, result.segments, regions, start, end)
    if not lost:
        return result
    log.info("decode of %.1f-%.1f s lost speech at %s (%d words)", start, end, lost, word_count(result.text))
    redo_at = redo_from(result.segments, regions, lost, start) if options.redo == "stretch" else None
    if depth < MAX_COVERAGE_DEPTH and redo_at is not None:
        cut = round((redo_at - offset) * SAMPLE_RATE)
        rest = request.with_(audio=audio[cut:], prompt=None, progress=None)
        tail = await decode_covered(engine, rest, redo_at, depth + 1, options)
        return _joined([result, tail], result.language, duration)  # the kept text is all before the cut
    if depth < MAX_COVERAGE_DEPTH and duration >= MIN_HALVED_S:
        cut = _middle_cut(audio)
        first = request.with_(audio=audio[:cut], progress=None)
        second = request.with_(audio=audio[cut:], prompt=None, progress=None)
        parts = await asyncio.gather(
            decode_covered(engine, first, offset, depth + 1, options),
            decode_covered(engine, second, offset + cut / SAMPLE_RATE, depth + 1, options),
        )
        halves = _joined(list(parts), result.language, duration)
        if word_count(halves.text) >= word_count(result.text):
            return halves  # each half has marked what it still lost
    gaps = []
    for a, b in lost:
        if not has_times(result.segments, start, end):  # the words sit at the start: the rest is lost
            a = speech_after_words(regions, a, word_count(result.text))
        if b - a >= 1.0:
            gaps.append(gap_segment((a, b)))
    if not gaps:
        return result
    log.warning("speech at %s could not be decoded; marked as gaps", [(g.start, g.end) for g in gaps])
    return _joined([result, Transcription("", result.language, duration, gaps)], result.language, duration)
