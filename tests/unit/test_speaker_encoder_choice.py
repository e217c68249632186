"""SPEAKER_ENCODER (issue 19, item 3): Resemblyzer's wheel by default, or a WeSpeaker-style
ONNX model from the Hugging Face hub (engine/speakers/choice.py, onnx_encoder.py).

The hub cannot be reached here, so `hf_hub_download` / `list_repo_files` are the only
things replaced: they hand back a tiny ONNX model built in the test with a WeSpeaker
export's input and output (feats (batch, frames, 80) -> embs (batch, dim)). Its "embedding"
is each filterbank band's largest deviation from the window's mean, so two voices in
different bands come out apart and the real clustering can tell them.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

SR = 16000


def _tiny_model(path) -> str:
    """feats (B, T, 80) -> embs (B, 80), WeSpeaker's names and shapes: each band's largest
    rise above the window's mean, less 3 (a noise band's own ups and downs stay under it)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMax", ["feats"], ["peak"], axes=[1], keepdims=0),
        helper.make_node("Sub", ["peak", "floor"], ["above"]),
        helper.make_node("Relu", ["above"], ["embs"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_speaker",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["B", "T", 80])],
        [helper.make_tensor_value_info("embs", TensorProto.FLOAT, ["B", 80])],
        initializer=[helper.make_tensor("floor", TensorProto.FLOAT, [], [3.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _syllables(hz: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A tone on for 0.2 s and off for 0.15 s (speech-like energy changes) over noise loud
    enough to hide the analysis window's spectral leakage."""
    n = int(seconds * SR)
    gate = ((np.arange(n) % int(0.35 * SR)) < int(0.2 * SR)).astype(np.float32)
    gate = np.convolve(gate, np.hanning(320) / np.hanning(320).sum(), mode="same")  # 20 ms ramps: no clicks
    tone = 0.3 * np.sin(2 * np.pi * hz * np.arange(n) / SR) * gate
    return (tone + rng.normal(0, 0.01, n)).astype(np.float32)


@pytest.fixture
def fresh_choice(monkeypatch):
    """No configured choice and no loaded shared encoder, restored afterwards."""
    from engine.speakers import choice, encoder

    monkeypatch.setattr(choice, "_configured", None)
    monkeypatch.setattr(encoder, "_shared", None)
    monkeypatch.setattr(encoder, "_failed", None)
    return choice


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The hub replaced: records calls; `files` is the repository's listing."""
    import huggingface_hub

    model = _tiny_model(tmp_path / "voxceleb_resnet34_LM.onnx")
    state = {"calls": [], "files": ["README.md", "voxceleb_resnet34_LM.onnx", "avg_model.pt"], "error": None}

    def download(repo_id, filename, token=None, **_):
        state["calls"].append((repo_id, filename, token))
        if state["error"] is not None:
            raise state["error"]
        return model

    def list_files(repo_id, token=None, **_):
        if state["error"] is not None:
            raise state["error"]
        return state["files"]

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", list_files)
    return state


@pytest.mark.parametrize(
    ("text", "kind", "repo", "filename"),
    [
        ("resemblyzer", "resemblyzer", None, None),
        ("hub:Wespeaker/wespeaker-voxceleb-resnet34-LM", "onnx", "Wespeaker/wespeaker-voxceleb-resnet34-LM", None),
        ("hub:csukuangfj/speaker-embedding-models/3dspeaker_campplus.onnx", "onnx", "csukuangfj/speaker-embedding-models", "3dspeaker_campplus.onnx"),
        ("hub:owner/repo/sub/dir/model.onnx", "onnx", "owner/repo", "sub/dir/model.onnx"),
    ],
)
def test_encoder_values_parse(text, kind, repo, filename):
    from engine.speakers.choice import parse_spec

    spec = parse_spec(text)
    assert (spec.kind, spec.repo_id, spec.filename) == (kind, repo, filename)
    assert str(spec) == text


@pytest.mark.parametrize("text", ["pyannote", "hub:", "hub:onlyname", "hub:owner/repo/model.bin", "Resemblyzer ", "hub:a//b"])
def test_a_bad_encoder_value_names_the_setting_and_its_forms(text):
    from engine.speakers.choice import configure

    with pytest.raises(ValueError, match=r"SPEAKER_ENCODER=.*expected `resemblyzer` or `hub:"):
        configure(text)


def test_the_default_is_the_wheels_encoder(monkeypatch):
    from settings import Settings

    monkeypatch.delenv("SPEAKER_ENCODER", raising=False)
    assert Settings.from_env().speaker_encoder == "resemblyzer"


def test_thresholds_follow_the_configured_encoder_before_it_loads(fresh_choice, monkeypatch):
    """A hub model's cosine distances are not Resemblyzer's: each kind has its own cuts,
    known from the setting alone (nothing fetched), and from a loaded encoder's kind."""
    from engine.speakers.cluster import FILE_THRESHOLD, LIVE_THRESHOLD
    from engine.speakers.encoder import VoiceEncoder

    monkeypatch.delenv("SPEAKER_ENCODER", raising=False)
    assert (fresh_choice.configured_thresholds().file, fresh_choice.configured_thresholds().live) == (FILE_THRESHOLD, LIVE_THRESHOLD)
    assert fresh_choice.THRESHOLDS["resemblyzer"] == fresh_choice.THRESHOLDS[VoiceEncoder.kind]
    monkeypatch.setenv("SPEAKER_ENCODER", "hub:Wespeaker/wespeaker-voxceleb-resnet34-LM")
    assert fresh_choice.configured_thresholds() == fresh_choice.THRESHOLDS["onnx"] != fresh_choice.THRESHOLDS["resemblyzer"]
    fresh_choice.configure("resemblyzer")  # a flag wins over the environment
    assert fresh_choice.configured_thresholds() == fresh_choice.THRESHOLDS["resemblyzer"]


def test_kaldi_fbank_frames_and_band():
    """Kaldi's framing (whole 25 ms frames every 10 ms) and mel scale: a 1 kHz tone is
    loudest in the band centred nearest 1 kHz on the mel scale 1127 ln(1 + f / 700)."""
    from engine.speakers.onnx_encoder import FbankFeatures

    audio = 0.3 * np.sin(2 * np.pi * 1000 * np.arange(SR) / SR).astype(np.float32)
    feats = FbankFeatures()(audio)
    assert feats.shape == (1 + (SR - 400) // 160, 80)
    mel = lambda f: 1127 * np.log(1 + f / 700)
    centres = mel(20) + (np.arange(80) + 1) * (mel(8000) - mel(20)) / 81
    assert int(np.argmax(feats.mean(axis=0))) == int(np.argmin(np.abs(centres - mel(1000))))


def test_the_features_are_kaldis():
    """The hub models were trained on Kaldi fbank (WeSpeaker computes it with torchaudio's
    Kaldi port, its runtime with kaldi-native-fbank): the features here, from transformers'
    audio_utils, equal kaldi-native-fbank's (Hamming window, no dither, 80 bins)."""
    import kaldi_native_fbank as knf

    from engine.speakers.onnx_encoder import FbankFeatures

    rng = np.random.default_rng(7)
    audio = (rng.normal(0, 0.05, 3 * SR) + 0.2 * np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR)).astype(np.float32)
    options = knf.FbankOptions()
    options.frame_opts.dither = 0
    options.frame_opts.window_type = "hamming"
    options.frame_opts.samp_freq = SR
    options.frame_opts.snip_edges = True
    options.mel_opts.num_bins = 80
    kaldi = knf.OnlineFbank(options)
    kaldi.accept_waveform(SR, (audio * 32768).tolist())
    kaldi.input_finished()
    reference = np.stack([kaldi.get_frame(i) for i in range(kaldi.num_frames_ready)])
    mine = FbankFeatures()(audio)
    assert mine.shape == reference.shape == (298, 80)
    assert np.abs(mine - reference).max() < 1e-2  # log energies of about 20: float32 rounding


def test_a_hub_model_labels_two_voices_apart(fresh_choice, hub, monkeypatch):
    """SPEAKER_ENCODER=hub:... loads the fetched ONNX file at first use (HF_TOKEN passed),
    gives VoiceEncoder's windows, and the real clustering at its thresholds finds the two
    voices in order; the model is fetched once per process."""
    from engine.speakers.cluster import cluster_windows
    from engine.speakers.encoder import shared_encoder
    from engine.speakers.onnx_encoder import OnnxEncoder

    monkeypatch.setenv("SPEAKER_ENCODER", "hub:Wespeaker/wespeaker-voxceleb-resnet34-LM/voxceleb_resnet34_LM.onnx")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    rng = np.random.default_rng(3)
    audio = np.concatenate([_syllables(300, 6, rng), _syllables(2500, 6, rng)])
    encoder = shared_encoder()
    assert isinstance(encoder, OnnxEncoder) and shared_encoder() is encoder
    assert hub["calls"] == [("Wespeaker/wespeaker-voxceleb-resnet34-LM", "voxceleb_resnet34_LM.onnx", "hf_test")]
    windows = encoder.windows(audio, 0.4)
    assert len(windows.centers) == len(windows.embeddings) and 0.8 < windows.centers[0] < 0.9
    assert abs(windows.centers[-1] - (len(audio) / SR - 0.8)) < 0.02
    assert np.allclose(np.linalg.norm(windows.embeddings, axis=1), 1, atol=1e-5)
    threshold = fresh_choice.thresholds_for(encoder).file
    labels = cluster_windows(windows.embeddings, 0.4, threshold)
    first = windows.centers < 5.2
    second = windows.centers > 6.8
    assert set(labels[first]) == {0} and set(labels[second]) == {1}
    refs = encoder.utterances([audio[: 3 * SR], audio[-3 * SR :], audio[SR : 4 * SR]])
    assert refs.shape == (3, 80)
    assert refs[0] @ refs[2] > refs[0] @ refs[1]
    short = encoder.windows(audio[:4000], 0.4)  # under one window: padded to one
    assert short.embeddings.shape == (1, 80)


def test_without_a_file_name_the_repos_one_onnx_file_is_taken(fresh_choice, hub):
    from engine.speakers.choice import EncoderUnavailable, load_encoder

    load_encoder("hub:Wespeaker/wespeaker-voxceleb-resnet34-LM")
    assert hub["calls"][-1][:2] == ("Wespeaker/wespeaker-voxceleb-resnet34-LM", "voxceleb_resnet34_LM.onnx")
    hub["files"] = ["a.onnx", "b.onnx"]
    with pytest.raises(EncoderUnavailable, match=r"2 \.onnx files \(a\.onnx, b\.onnx\); name one as hub:o/r/<file>\.onnx"):
        load_encoder("hub:o/r")


def test_offline_is_a_503_that_says_why_and_is_tried_again_later(fresh_choice, hub, monkeypatch):
    """No network and nothing cached: the API's 503 speakers_unavailable names the model,
    HF_HOME and the offline default. Requests within RETRY_AFTER_S get it at once (no second
    wait on the hub); after it, with the hub back, the next request loads the model."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    from engine.base import Segment, Transcription, Word
    from engine.speakers.encoder import shared_encoder
    from web import diarized
    from web.errors import APIError

    monkeypatch.setenv("SPEAKER_ENCODER", "hub:Wespeaker/wespeaker-voxceleb-resnet34-LM/voxceleb_resnet34_LM.onnx")
    hub["error"] = LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic has been disabled.")
    audio = np.zeros(3 * SR, np.float32)
    words = [Word(" hello", 0.5, 1.0, 0.9), Word(" there", 1.2, 2.0, 0.9)]
    result = Transcription("hello there", "en", 3.0, segments=[Segment(0.5, 2.0, " hello there")], words=words)
    with pytest.raises(APIError) as caught:
        asyncio.run(diarized.label(audio, result, None))
    error = caught.value
    assert error.status == 503 and error.code == "speakers_unavailable"
    assert "wespeaker-voxceleb-resnet34-LM" in str(error.message) and "HF_HOME" in str(error.message)
    assert "SPEAKER_ENCODER=resemblyzer" in str(error.message)
    from engine.speakers import encoder

    now = encoder._clock()
    monkeypatch.setattr(encoder, "_clock", lambda: now + encoder.RETRY_AFTER_S - 1)
    hub["error"] = None
    with pytest.raises(diarized.EncoderMissing, match="HF_HOME"):
        shared_encoder()
    assert len(hub["calls"]) == 1
    monkeypatch.setattr(encoder, "_clock", lambda: now + encoder.RETRY_AFTER_S + 1)
    assert shared_encoder() is not None and len(hub["calls"]) == 2


def test_a_refused_repository_says_to_check_the_token(fresh_choice, hub):
    import httpx
    from huggingface_hub.errors import GatedRepoError

    from engine.speakers.choice import EncoderUnavailable, load_encoder

    response = httpx.Response(401, request=httpx.Request("GET", "https://huggingface.co/pyannote/x"))
    hub["error"] = GatedRepoError("401 Client Error: access to model pyannote/x is restricted", response=response)
    with pytest.raises(EncoderUnavailable, match=r"refused pyannote/x .*HF_TOKEN.*SPEAKER_ENCODER=resemblyzer"):
        load_encoder("hub:pyannote/x/model.onnx", token="hf_wrong")
    assert hub["calls"] == [("pyannote/x", "model.onnx", "hf_wrong")]


def test_a_model_with_other_inputs_is_refused_by_name(fresh_choice, hub, tmp_path):
    """A hub ONNX file that is not a filterbank speaker model (say a VAD) says what it expected."""
    import onnx
    from onnx import TensorProto, helper

    from engine.speakers.choice import EncoderUnavailable, load_encoder

    node = helper.make_node("Identity", ["input"], ["output"])
    graph = helper.make_graph([node], "not_speaker", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 512])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 512])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "vad.onnx"
    onnx.save(model, str(path))
    import huggingface_hub

    huggingface_hub.hf_hub_download = lambda **_: str(path)  # restored by the hub fixture's monkeypatch
    with pytest.raises(EncoderUnavailable, match=r"cannot be loaded: .*expected one input of \(batch, frames, 80\)"):
        load_encoder("hub:o/r/vad.onnx")
