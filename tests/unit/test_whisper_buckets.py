"""The encoder window rule (engine.whisper_buckets): pure functions, no vLLM."""

from __future__ import annotations

import pytest

from engine.quality import overruns_audio

from engine.whisper_buckets import (
    ARCHITECTURE,
    PLUGIN_GROUP,
    PLUGIN_NAME,
    DEFAULT_BUCKETS_S,
    DEFAULT_PAD_S,
    EncoderWindow,
    bucket_samples,
    bucket_seconds,
    encoder_frames,
    engine_kwargs,
    mel_frames,
    parse_window,
    plugin_installed,
)

SR = 16_000
BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0)


@pytest.mark.parametrize(
    "seconds, bucket",
    [(0.1, 5.0), (2.0, 5.0), (5.0, 5.0), (5.01, 10.0), (9.99, 10.0), (14.2, 15.0), (20.0, 20.0), (29.9, 30.0), (30.0, 30.0), (45.0, 30.0)],
)
def test_smallest_bucket_that_holds_the_clip(seconds: float, bucket: float) -> None:
    assert bucket_seconds(int(seconds * SR), BUCKETS) == bucket


def test_encoder_frames_follow_the_bucket_50_per_second() -> None:
    # conv2's stride 2: 100 mel frames per second -> 50 encoder frames per second.
    assert [encoder_frames(int(s * SR), BUCKETS) for s in (1, 7, 12, 19, 28)] == [250, 500, 750, 1000, 1500]
    assert mel_frames(30 * SR) == 3000
    assert encoder_frames(60 * SR, BUCKETS) == 1500  # longer clips are cut to Whisper's 30 s


def test_full_window_is_1500_frames_for_every_clip() -> None:
    assert encoder_frames(SR, ()) == 1500
    assert bucket_samples(SR, ()) == 30 * SR


def test_parse_window_modes() -> None:
    assert parse_window("full") == EncoderWindow("full")
    assert parse_window("bucketed") == EncoderWindow("bucketed", DEFAULT_BUCKETS_S, DEFAULT_PAD_S)
    assert parse_window("") == EncoderWindow("bucketed", DEFAULT_BUCKETS_S, DEFAULT_PAD_S)
    assert parse_window("20,10").buckets == (10.0, 20.0, 30.0)  # sorted, 30 s added
    assert parse_window("30") == EncoderWindow("full")
    assert parse_window("full").describe().startswith("full")
    assert parse_window("10,30").describe() == "bucketed 10/30 s"


def test_padding_moves_a_clip_that_ends_near_its_bucket_up() -> None:
    # 4.3 s fills a 5 s window to 0.7 s of its end: with 1 s of padding it takes 10 s.
    assert bucket_seconds(int(4.3 * SR), BUCKETS, 1.0) == 10.0
    assert bucket_seconds(int(3.9 * SR), BUCKETS, 1.0) == 5.0
    assert bucket_seconds(int(29.5 * SR), BUCKETS, 1.0) == 30.0  # never past Whisper's window
    window = parse_window("5,10,30+1")
    assert (window.buckets, window.pad_s) == ((5.0, 10.0, 30.0), 1.0)
    assert window.describe() == "bucketed 5/10/30 s, >= 1 s padding"


@pytest.mark.parametrize("bad", ["fast", "0,10", "10,45", "2.345", "5,10+x", "5,10+40"])
def test_parse_window_rejects_nonsense(bad: str) -> None:
    with pytest.raises(ValueError, match="ENCODER_WINDOW"):
        parse_window(bad)


def test_full_window_adds_no_engine_args() -> None:
    kwargs, window = engine_kwargs(parse_window("full"), runner="inprocess")
    assert kwargs == {} and window.mode == "full"


def test_a_child_process_engine_core_gets_buckets_through_the_entry_point(monkeypatch) -> None:
    # AsyncLLM's engine core is spawned; vLLM registers our architecture there from the
    # vllm.general_plugins entry point that scripts/setup.sh installs (pip install -e .).
    import engine.whisper_buckets as buckets

    monkeypatch.setattr(buckets, "_register_here", lambda: None)  # no vLLM import in this tier
    assert plugin_installed() is None
    kwargs, window = engine_kwargs(parse_window("bucketed"), runner="asyncllm")
    assert window.mode == "bucketed" and kwargs["hf_overrides"]["architectures"] == [ARCHITECTURE]


def test_an_encoder_dtype_travels_in_the_overrides_and_shows_in_the_description(monkeypatch) -> None:
    # CPU_DTYPE=bfloat16-encoder: our architecture casts its encoder after loading.
    import engine.whisper_buckets as buckets
    from engine.whisper_buckets import ENCODER_DTYPE_KEY

    monkeypatch.setattr(buckets, "_register_here", lambda: None)
    kwargs, window = engine_kwargs(parse_window("bucketed"), runner="inprocess", encoder_dtype="bfloat16")
    assert kwargs["hf_overrides"][ENCODER_DTYPE_KEY] == "bfloat16" and window.encoder_dtype == "bfloat16"
    assert window.describe().endswith(", bfloat16 encoder")
    kwargs, window = engine_kwargs(parse_window("bucketed"), runner="inprocess")
    assert ENCODER_DTYPE_KEY not in kwargs["hf_overrides"] and window.encoder_dtype is None


def test_the_full_window_runs_the_model_dtype_in_the_encoder() -> None:
    # Stock vLLM Whisper (ENCODER_WINDOW=full) has no encoder dtype of its own.
    kwargs, window = engine_kwargs(parse_window("full"), runner="inprocess", encoder_dtype="bfloat16")
    assert kwargs == {} and window.encoder_dtype is None


def test_without_the_entry_point_a_child_process_engine_core_falls_back_to_full(monkeypatch) -> None:
    monkeypatch.setenv("VLLM_PLUGINS", "some_other_plugin")
    kwargs, window = engine_kwargs(parse_window("bucketed"), runner="asyncllm")
    assert kwargs == {} and window.mode == "full"
    assert "child process" in window.describe() and "VLLM_PLUGINS" in window.describe()


def test_the_entry_point_names_our_register_function() -> None:
    import ast
    import importlib.util
    from importlib.metadata import entry_points

    (entry,) = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name == PLUGIN_NAME]
    assert (entry.module, entry.attr) == ("engine.whisper_bucketed_model", "register")
    # Without importing vLLM (unit tier): the module is this checkout's, and defines it.
    spec = importlib.util.find_spec(entry.module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(open(spec.origin).read())
    assert any(isinstance(node, ast.FunctionDef) and node.name == entry.attr for node in tree.body)


# -- the short window's safety net: outputs that ran past their audio (engine.quality) ------

@pytest.mark.parametrize(
    "text, seconds",
    [
        # Seen with 5 s / 10 s buckets on ../shared/eval clips (bench encoder-windows).
        ("then in the same operations with ugly ones. Then in the same operations with ugly ones.", 2.6),
        ("A thin stripe runs down the middle. " * 6, 2.4),
        (
            "especially as regards the lower case letters. And type very similar was used during the next "
            "15 or 20 years, not only by Schofer, not only by Schofer, not only by Schofer",
            9.5,
        ),
        ("He was not an old-s-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y-y", 2.0),
        ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen", 2.0),
    ],
)
def test_overrun_outputs_are_caught(text: str, seconds: float) -> None:
    assert overruns_audio(text, seconds)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("then in the same operations with ugly ones.", 2.6),
        ("Yes. Yes. Yes.", 1.0),  # short repeats are speech, not a loop
        ("I think that that is fine, I think.", 2.0),
        (
            "Printing, in the only sense with which we are at present concerned, differs from most if not "
            "from all the arts and crafts represented in the exhibition.",
            9.6,
        ),
        ("", 3.0),
    ],
)
def test_ordinary_outputs_are_left_alone(text: str, seconds: float) -> None:
    assert not overruns_audio(text, seconds)


def test_window_seconds_per_clip_in_each_mode() -> None:
    """What the engine asks before a full-window retry: full mode is 30 s for every clip."""
    assert parse_window("full").seconds_for(2 * 16_000) == 30.0
    window = parse_window("bucketed")
    assert window.seconds_for(2 * 16_000) == 10.0  # 2 s + 1 s padding
    assert window.seconds_for(9_500 * 16) == 15.0  # 9.5 s + 1 s > 10 s
    assert window.seconds_for(29 * 16_000) == 30.0
