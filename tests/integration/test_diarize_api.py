"""Issue 19: `response_format=diarized_json` on /v1/audio/transcriptions, driven by the
official `openai` client against the app on loopback (real engine, real voice encoder).

The recording is built from tests/data: LJ Speech's reader, then JFK, then the reader
again, with 0.7 s between turns; the reference of who spoke when is the construction.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import openai
import pytest

from tests.integration.misbehaving_server import serve_app
from tests.integration.test_openai_api import _app

GAP_S = 0.7


def _wav(audio: np.ndarray) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, audio, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def conversation(test_data):
    """(wav bytes, [(start, end, voice)], a reference clip of the reader not in the recording)."""
    from evaluation import read_audio

    clips = test_data / "clips"
    parts = [("lj", "ljspeech_coqui__LJ001-0001.flac"), ("jfk", "openai_whisper__jfk.flac"), ("lj", "ljspeech_coqui__LJ001-0003.flac")]
    audio, turns, t = [], [], 0.0
    for voice, name in parts:
        clip = read_audio(clips / name)
        audio += [clip, np.zeros(int(GAP_S * 16000), np.float32)]
        turns.append((t, t + len(clip) / 16000, voice))
        t += len(clip) / 16000 + GAP_S
    reference = read_audio(clips / "ljspeech_coqui__LJ001-0004.flac")
    return _wav(np.concatenate(audio)), turns, _wav(reference)


@pytest.fixture(scope="module")
def client(engine):
    with serve_app(_app(engine)) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="anything", max_retries=0, timeout=600)


def _voice_at(turns, start, end):
    middle = (start + end) / 2
    return min(turns, key=lambda t: 0 if t[0] <= middle <= t[1] else min(abs(middle - t[0]), abs(middle - t[1])))[2]


def _check(segments, turns, names):
    """Every segment sits in one voice's turn and carries that voice's label; two voices, two labels."""
    assert segments
    labels = {}
    for s in segments:
        voice = _voice_at(turns, s.start, s.end)
        labels.setdefault(voice, set()).add(s.speaker)
    assert {v: sorted(l) for v, l in labels.items()} == {v: [names[v]] for v in names}, [(s.start, s.end, s.speaker, s.text) for s in segments]


def test_diarized_json(client, conversation):
    audio, turns, _ = conversation
    result = client.audio.transcriptions.create(model="whisper-1", file=("talk.wav", audio), response_format="diarized_json")
    assert result.task == "transcribe" and result.duration == pytest.approx(turns[-1][1] + GAP_S, abs=0.1)
    assert result.usage is not None and result.usage.seconds >= int(turns[-1][1])
    _check(result.segments, turns, {"lj": "A", "jfk": "B"})
    assert all(s.type == "transcript.text.segment" and s.id for s in result.segments)
    assert "americans" in " ".join(s.text for s in result.segments if s.speaker == "B").lower()
    assert "printing" in result.text.lower() and "americans" in result.text.lower()


def test_known_speaker_names_the_matching_voice(client, conversation):
    audio, turns, reference = conversation
    url = "data:audio/wav;base64," + base64.b64encode(reference).decode()
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("talk.wav", audio), response_format="diarized_json",
        known_speaker_names=["Linda"], known_speaker_references=[url],
    )
    # The reader is named from her reference; JFK, unnamed, gets the first letter.
    _check(result.segments, turns, {"lj": "Linda", "jfk": "A"})


def test_streamed_segments(client, conversation):
    audio, turns, _ = conversation
    stream = client.audio.transcriptions.create(
        model="whisper-1", file=("talk.wav", audio), response_format="diarized_json", stream=True
    )
    segments, done = [], None
    for event in stream:
        if event.type == "transcript.text.segment":
            segments.append(event)
        elif event.type == "transcript.text.done":
            done = event.text
    _check(segments, turns, {"lj": "A", "jfk": "B"})
    assert done is not None and "americans" in done.lower()


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"response_format": "json", "known_speaker_names": ["x"], "known_speaker_references": ["data:audio/wav;base64,AAAA"]}, "known_speaker_names"),
        ({"response_format": "diarized_json", "known_speaker_names": ["x"]}, "known_speaker_names"),
        ({"response_format": "diarized_json", "known_speaker_names": ["x"], "known_speaker_references": ["not a url"]}, "known_speaker_references"),
        ({"response_format": "diarized_json", "prompt": "hello"}, "prompt"),
    ],
)
def test_wrong_speaker_fields_are_400(client, conversation, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=("talk.wav", conversation[0]), **kwargs)
    assert info.value.body["param"] == param, info.value.body


def test_translation_has_no_diarized_json(client, conversation):
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.translations.create(model="whisper-1", file=("talk.wav", conversation[0]), response_format="diarized_json")
    assert info.value.body["param"] in ("response_format", "model"), info.value.body


def test_a_hub_encoder_that_cannot_be_fetched_is_503(client, conversation, monkeypatch):
    """SPEAKER_ENCODER=hub:... with no network and nothing cached: the official client gets
    503 `speakers_unavailable` naming the model and what to do (the hub is the one thing
    replaced: it answers as huggingface_hub does offline)."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from engine.speakers import choice, encoder

    def offline(**_):
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic has been disabled.")

    monkeypatch.setenv("SPEAKER_ENCODER", "hub:Wespeaker/wespeaker-voxceleb-resnet34-LM/voxceleb_resnet34_LM.onnx")
    monkeypatch.setattr(choice, "_configured", None)
    monkeypatch.setattr(encoder, "_shared", None)  # the loaded Resemblyzer comes back after the test
    monkeypatch.setattr(encoder, "_failed", None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    url = "data:audio/wav;base64," + base64.b64encode(conversation[2]).decode()
    with pytest.raises(openai.InternalServerError) as info:
        client.audio.transcriptions.create(
            model="whisper-1", file=("talk.wav", conversation[0]), response_format="diarized_json",
            known_speaker_names=["Linda"], known_speaker_references=[url],
        )
    error = info.value.body
    assert info.value.status_code == 503 and error["code"] == "speakers_unavailable", error
    assert "wespeaker-voxceleb-resnet34-LM" in error["message"] and "SPEAKER_ENCODER=resemblyzer" in error["message"], error
