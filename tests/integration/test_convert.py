"""CTranslate2 -> Hugging Face Whisper conversion (engine/convert/).

The converted model must be the same model: it loads in transformers with no missing or
unexpected weights, and greedy decoding gives the text faster-whisper gives on the
original CTranslate2 checkpoint, for both embedded models (English-only tiny.en and
multilingual base).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from engine.convert import (
    MARKER_NAME,
    base_ct2_dir,
    convert_ct2_whisper,
    read_ct2_model_bin,
    tiny_en_ct2_dir,
)
from settings import eval_dir

EVAL_DIR = eval_dir()
CLIPS = [
    "clips/openai_whisper__jfk.flac",
    "clips/cmu_arctic__slt_arctic_a0009.flac",
    "clips/speechbrain__spk1_snt3.flac",
    "clips/pocketsphinx__sense_and_sensibility_01_austen_64kb-0880.flac",
]

# (model, decoder prompt, English-only)
MODELS = {
    "tiny.en": (["<|startoftranscript|>", "<|notimestamps|>"], True),
    "base": (["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"], False),
}


def _read_clip(rel: str) -> np.ndarray:
    import soundfile as sf

    path = EVAL_DIR / rel
    if not path.exists():
        pytest.skip(f"eval clip {path} not available")
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    assert sr == 16000, f"{path}: {sr} Hz"
    return audio.mean(axis=1)


@pytest.fixture(scope="module")
def audios() -> dict[str, np.ndarray]:
    return {rel: _read_clip(rel) for rel in CLIPS}


@pytest.fixture(scope="module", params=list(MODELS))
def converted(request, tmp_path_factory) -> tuple[str, Path, Path]:
    """(name, CTranslate2 dir, converted HF dir), converted once per model."""
    name = request.param
    tmp = tmp_path_factory.mktemp(f"convert-{name}")
    ct2_dir = tiny_en_ct2_dir() if name == "tiny.en" else base_ct2_dir(tmp / "cache")
    return name, ct2_dir, convert_ct2_whisper(ct2_dir, tmp / "hf")


@pytest.fixture(scope="module")
def hf_model(converted):
    import torch
    from transformers import (
        AutoTokenizer,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    _, _, hf_dir = converted
    model, info = WhisperForConditionalGeneration.from_pretrained(hf_dir, output_loading_info=True, dtype=torch.float32)
    model.eval()
    return model, info, AutoTokenizer.from_pretrained(hf_dir), WhisperFeatureExtractor.from_pretrained(hf_dir)


def test_output_files_and_marker(converted):
    _, ct2_dir, hf_dir = converted
    for f in (
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        MARKER_NAME,
    ):
        assert (hf_dir / f).is_file(), f
    assert not list(hf_dir.parent.glob(".hf.tmp-*")), "staging dir left behind"
    pre = json.loads((hf_dir / "preprocessor_config.json").read_text())
    assert {k: pre[k] for k in ("feature_size", "sampling_rate", "n_fft", "hop_length", "chunk_length")} == {
        "feature_size": 80,
        "sampling_rate": 16000,
        "n_fft": 400,
        "hop_length": 160,
        "chunk_length": 30,
    }
    # A second call finds the marker and does not rewrite anything.
    mtime = (hf_dir / "model.safetensors").stat().st_mtime_ns
    assert convert_ct2_whisper(ct2_dir, hf_dir) == hf_dir
    assert (hf_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_special_tokens_match_checkpoint(converted, hf_model):
    name, ct2_dir, _ = converted
    model, _, tokenizer, _ = hf_model
    vocab = (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")[:-1]
    rows = read_ct2_model_bin(ct2_dir / "model.bin").variables["decoder/embeddings/weight"].shape[0]
    english_only = MODELS[name][1]
    assert model.config.vocab_size == rows == len(vocab) == len(tokenizer) == (51864 if english_only else 51865)
    eot = 50256 if english_only else 50257
    expected = {
        "<|endoftext|>": eot,
        "<|startoftranscript|>": eot + 1,
        "<|notimestamps|>": eot + 106,
        "<|0.00|>": eot + 107,
        "<|30.00|>": rows - 1,
    }
    for token, token_id in expected.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id == vocab.index(token), token
    assert model.config.decoder_start_token_id == eot + 1
    gen = model.generation_config
    assert gen.is_multilingual is (not english_only)
    assert gen.no_timestamps_token_id == eot + 106
    assert gen.forced_decoder_ids is None
    assert gen.alignment_heads
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    assert list(model.config.suppress_tokens) == ct2_config["suppress_ids"]
    assert list(model.config.begin_suppress_tokens) == ct2_config["suppress_ids_begin"]


def test_transformers_loads_without_missing_keys(hf_model):
    model, info, _, _ = hf_model
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()


def _greedy(model, tokenizer, features, prompt: list[int], max_new_tokens: int = 128) -> list[int]:
    """Plain greedy decoding with faster-whisper's token suppression (suppress_tokens=[-1],
    suppress_blank=True), written out so it is independent of generate()'s defaults."""
    import torch

    gen = model.generation_config
    suppress = set(gen.suppress_tokens)
    sot = gen.decoder_start_token_id
    suppress |= {sot, gen.prev_sot_token_id, gen.prev_sot_token_id - 1}  # sot, sot_prev, sot_lm
    suppress |= set(tokenizer.convert_tokens_to_ids(["<|transcribe|>", "<|translate|>"]))
    suppress |= {tokenizer.convert_tokens_to_ids("<|notimestamps|>") - 1}  # no_speech/nocaptions
    suppress = torch.tensor(sorted(suppress))
    begin = torch.tensor(list(gen.begin_suppress_tokens))
    with torch.inference_mode():
        encoder_out = model.get_encoder()(features)
        ids = torch.tensor([prompt])
        for step in range(max_new_tokens):
            logits = model(encoder_outputs=encoder_out, decoder_input_ids=ids).logits[0, -1]
            logits[suppress] = -float("inf")
            if step == 0:
                logits[begin] = -float("inf")
            token = int(logits.argmax())
            if token == gen.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return ids[0, len(prompt) :].tolist()


def _pad_to_30s(audio: np.ndarray) -> np.ndarray:
    """The audio as transformers' feature extractor sees it (zero-padded to 30 s).

    faster-whisper pads a short clip only by 160 samples and fills the rest of the 30 s
    window with log-mel zeros, whereas OpenAI/transformers compute the mel of zero audio;
    near-ties (e.g. the comma in the JFK clip, a 0.08 logit margin) can then flip. Giving
    faster-whisper the padded audio makes both see the same features, so the comparison
    tests the weights, not the two front ends.
    """
    return np.pad(audio, (0, max(0, 480000 - len(audio))))


def _faster_whisper_texts(ct2_dir: Path, audios: dict[str, np.ndarray], english_only: bool) -> dict[str, str]:
    from faster_whisper import WhisperModel

    fw = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=4)
    texts = {}
    for rel, audio in audios.items():
        segments, _ = fw.transcribe(
            _pad_to_30s(audio),
            beam_size=1,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            language=None if english_only else "en",
            task="transcribe",
            vad_filter=False,
            no_speech_threshold=None,
        )
        texts[rel] = "".join(s.text for s in segments).strip()
    return texts


def test_greedy_matches_faster_whisper(converted, hf_model, audios):
    name, ct2_dir, _ = converted
    model, _, tokenizer, extractor = hf_model
    prompt_tokens, english_only = MODELS[name]
    prompt = tokenizer.convert_tokens_to_ids(prompt_tokens)
    expected = _faster_whisper_texts(ct2_dir, audios, english_only)
    for rel, audio in audios.items():
        features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
        tokens = _greedy(model, tokenizer, features, prompt)
        text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        assert text == expected[rel], f"{name} {rel}"
    assert "ask not what your country can do for you" in expected[CLIPS[0]]


def test_generate_uses_generation_config(converted, hf_model, audios):
    """transformers' own generate() builds the right prompt from generation_config.json."""
    name, _, _ = converted
    model, _, tokenizer, extractor = hf_model
    prompt_tokens, english_only = MODELS[name]
    features = extractor(audios[CLIPS[0]], sampling_rate=16000, return_tensors="pt").input_features
    kwargs = {} if english_only else {"language": "en", "task": "transcribe"}
    out = model.generate(features, return_timestamps=False, **kwargs)
    prompt = tokenizer.convert_tokens_to_ids(prompt_tokens)
    expected = _greedy(model, tokenizer, features, prompt)
    generated = out[0].tolist()
    if generated[: len(prompt)] == prompt:
        generated = generated[len(prompt) :]
    assert (
        tokenizer.decode(generated, skip_special_tokens=True).strip()
        == tokenizer.decode(expected, skip_special_tokens=True).strip()
    )


def test_interrupted_conversion_leaves_no_model(tmp_path, monkeypatch):
    """A failure mid-write publishes nothing and leaves no staging dir behind."""
    from engine.convert import publish

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(publish, "_write_tokenizer", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        publish.convert_ct2_whisper(tiny_en_ct2_dir(), tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> Path:
    return convert_ct2_whisper(tiny_en_ct2_dir(), tmp_path_factory.mktemp("tiny-ref") / "hf")


@pytest.mark.parametrize("quantization", ["int8", "bfloat16"])
def test_reads_quantized_checkpoints(tiny_hf, tmp_path, quantization):
    """Round trip HF -> CTranslate2 (its own converter, int8/bfloat16) -> HF gives the same
    weights up to the quantization step, so dequantization, bfloat16 widening and the
    vocabulary.json variant of newer CTranslate2 versions are read correctly."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from safetensors.numpy import load_file

    ct2_dir = tmp_path / "ct2"
    converter = ctranslate2.converters.TransformersConverter(str(tiny_hf), copy_files=["tokenizer.json"])
    converter.convert(str(ct2_dir), quantization=quantization)
    back = load_file(str(convert_ct2_whisper(ct2_dir, tmp_path / "hf") / "model.safetensors"))
    ref = load_file(str(tiny_hf / "model.safetensors"))
    assert back.keys() == ref.keys()
    if quantization == "int8":
        assert (
            read_ct2_model_bin(ct2_dir / "model.bin").variables["encoder/layer_0/ffn/linear_0/weight"].dtype == np.int8
        )
    for name, expected in ref.items():
        got = back[name]
        if quantization == "bfloat16":
            np.testing.assert_allclose(got, expected, rtol=2**-8, atol=1e-30, err_msg=name)
        elif expected.ndim >= 2:  # int8, one scale per row: error <= row max / 254
            row_max = np.abs(expected).reshape(len(expected), -1).max(axis=1)
            tol = row_max.reshape((-1,) + (1,) * (expected.ndim - 1)) / 254 * 1.001 + 1e-12
            assert np.all(np.abs(got - expected) <= tol), name
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)
