"""engine/encoder_outputs.py: the vLLM engine's recent encoder outputs kept for the word
aligner, by input features; bounded by bytes, nothing kept until word times are in use."""

from __future__ import annotations

import torch

from engine.encoder_outputs import EncoderOutputs, features_key


def _features(seed: int, frames: int = 1000) -> torch.Tensor:
    return torch.randn(80, frames, generator=torch.Generator().manual_seed(seed))


def test_nothing_is_kept_until_enabled_then_the_same_features_find_their_output():
    store = EncoderOutputs()
    feats, out = _features(1), torch.randn(500, 384)
    store.put(feats, out)
    assert store.get(feats) is None and len(store) == 0
    store.enable()
    store.put(feats, out)
    assert torch.equal(store.get(feats.clone()), out)  # equal values, another tensor
    assert store.get(_features(2)) is None
    assert (store.hits, store.misses) == (1, 2)


def test_the_output_is_a_copy():
    store = EncoderOutputs()
    store.enable()
    feats, out = _features(1), torch.zeros(10, 4)
    store.put(feats, out)
    out += 1  # vLLM reusing its buffer
    assert float(store.get(feats).abs().sum()) == 0.0


def test_the_key_tells_shapes_and_values_apart():
    feats = _features(3)
    assert features_key(feats) == features_key(feats.clone())
    assert features_key(feats) != features_key(feats[:, :999])
    changed = feats.clone()
    changed[0, 0] += 1e-6
    assert features_key(changed) != features_key(feats)


def test_float32_features_find_an_output_kept_under_bfloat16_features():
    # CPU_DTYPE=bfloat16: vLLM hands the model bf16 features, the aligner computes float32.
    store = EncoderOutputs()
    store.enable()
    feats = _features(7)
    store.put(feats.to(torch.bfloat16), torch.ones(10, 4))
    assert store.get(feats) is not None and store.hits == 1


def test_bytes_are_bounded_oldest_out_first():
    one = 100 * 4 * 4  # a (100, 4) float32 output
    store = EncoderOutputs(max_bytes=3 * one)
    store.enable()
    feats = [_features(i, 10) for i in range(5)]
    for i in range(3):
        store.put(feats[i], torch.full((100, 4), float(i)))
    assert store.get(feats[0]) is not None  # used: now the newest
    store.put(feats[3], torch.full((100, 4), 3.0))  # evicts the oldest unused: 1
    assert store.get(feats[1]) is None and store.get(feats[0]) is not None and len(store) == 3
    store.put(feats[4], torch.zeros(1000, 4))  # larger than the whole budget: not kept
    assert store.get(feats[4]) is None and len(store) == 3
