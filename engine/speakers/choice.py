"""Which voice encoder labels speakers (`SPEAKER_ENCODER`), and its clustering thresholds.

- `resemblyzer` (default): Resemblyzer's encoder, whose weights ship in its PyPI wheel, so
  it works offline (engine/speakers/encoder.py). A search of PyPI found no stronger model
  whose weights ship in a package (BENCHMARKS.md, "Speakers").
- `hub:<repo_id>[/<file>.onnx]`: a WeSpeaker-style ONNX model (engine/speakers/onnx_encoder.py)
  fetched from the Hugging Face hub at first use with `hf_hub_download` (HF_TOKEN, cached
  under HF_HOME, so later starts work offline). Without a file name the repository's one
  `.onnx` file is taken. Offline with nothing cached, or refused, it raises
  `EncoderUnavailable` (an `EncoderMissing`: the API's 503 `speakers_unavailable`) saying why.

Cosine distances differ between encoders, so the thresholds that cut clusters are per
encoder kind, here (THRESHOLDS); `thresholds_for(encoder)` gives a loaded one's,
`configured_thresholds()` those of the encoder SPEAKER_ENCODER names, before it is loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.speakers.cluster import FILE_THRESHOLD, LIVE_THRESHOLD, NAME_SIMILARITY
from engine.speakers.encoder import EncoderMissing, SpeakerEncoder

RESEMBLYZER = "resemblyzer"
HUB_PREFIX = "hub:"
#: What a hub model is run as (the only kind: `OnnxEncoder`).
ONNX = "onnx"


@dataclass(frozen=True)
class Thresholds:
    """Cosine-distance cuts of one encoder's embeddings: files, live streams, and the
    similarity a known speaker's reference needs to name a cluster."""

    file: float
    live: float
    name_similarity: float


#: Per encoder kind. Resemblyzer's were chosen with `python -m bench.speakers` (cluster.py
#: keeps them). The ONNX models' are NOT measured here (the hub is unreachable from this
#: machine): pyannote 3.1 cuts its WeSpeaker ResNet34 clusters at a cosine distance of 0.70,
#: and 0.45 similarity is the usual WeSpeaker verification threshold; live stays 0.05 under
#: the file cut, as Resemblyzer's. Measure with `python -m bench.speakers --encoder hub:...`.
THRESHOLDS: dict[str, Thresholds] = {
    RESEMBLYZER: Thresholds(FILE_THRESHOLD, LIVE_THRESHOLD, NAME_SIMILARITY),
    ONNX: Thresholds(0.70, 0.65, 0.45),
}


class EncoderUnavailable(EncoderMissing):
    """A hub encoder could not be fetched or loaded (offline, refused, not there)."""


@dataclass(frozen=True)
class EncoderSpec:
    """A parsed `SPEAKER_ENCODER` value."""

    kind: str
    repo_id: str | None = None
    filename: str | None = None

    def __str__(self) -> str:
        if self.kind == RESEMBLYZER:
            return RESEMBLYZER
        return f"{HUB_PREFIX}{self.repo_id}" + (f"/{self.filename}" if self.filename else "")


def parse_spec(text: str) -> EncoderSpec:
    """`resemblyzer` or `hub:<owner>/<name>[/<path>.onnx]`; anything else is a ValueError
    that names the setting and its two forms."""
    value = text.strip()
    if value == RESEMBLYZER:
        return EncoderSpec(RESEMBLYZER)
    if value.startswith(HUB_PREFIX):
        parts = value[len(HUB_PREFIX):].strip("/").split("/")
        if len(parts) >= 2 and all(parts):
            filename = "/".join(parts[2:]) or None
            if filename is None or filename.endswith(".onnx"):
                return EncoderSpec(ONNX, f"{parts[0]}/{parts[1]}", filename)
    raise ValueError(
        f"SPEAKER_ENCODER={text!r}: expected `{RESEMBLYZER}` or `{HUB_PREFIX}<owner>/<repo>[/<file>.onnx]` "
        "(e.g. hub:Wespeaker/wespeaker-voxceleb-resnet34-LM/voxceleb_resnet34_LM.onnx)"
    )


def thresholds_for(encoder: SpeakerEncoder) -> Thresholds:
    """The clustering thresholds of a loaded encoder (by its `kind`)."""
    return THRESHOLDS[encoder.kind]


def _hub_error(spec: EncoderSpec, exc: Exception) -> EncoderUnavailable:
    """Why a hub model could not be had, in words a person can act on."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    fallback = f"or set SPEAKER_ENCODER={RESEMBLYZER} (offline, its weights in its wheel)"
    if isinstance(exc, LocalEntryNotFoundError):
        why = f"it is not in the local hub cache (HF_HOME) and the Hugging Face hub cannot be reached; fetch it once with a network, {fallback}"
    elif isinstance(exc, RepositoryNotFoundError):  # also gated repositories, and 401 for private ones
        why = f"the Hugging Face hub refused {spec.repo_id} (missing, private or gated); check HF_TOKEN and the repository's terms, {fallback}"
    elif isinstance(exc, RemoteEntryNotFoundError):
        why = f"{spec.repo_id} has no file {spec.filename!r}; name one of its .onnx files, {fallback}"
    elif isinstance(exc, HfHubHTTPError):
        why = f"the Hugging Face hub answered an error; check HF_TOKEN, {fallback}"
    else:
        why = f"the Hugging Face hub cannot be reached; {fallback}"
    return EncoderUnavailable(f"speaker encoder {spec} could not be fetched: {why} ({type(exc).__name__}: {exc})")


def fetch(
    spec: EncoderSpec,
    token: str | None = None,
    download: Callable[..., str] | None = None,
    list_files: Callable[..., list[str]] | None = None,
) -> Path:
    """The hub model's local ONNX file (downloaded once into HF_HOME's cache)."""
    import huggingface_hub

    download = download or huggingface_hub.hf_hub_download
    list_files = list_files or huggingface_hub.list_repo_files
    filename = spec.filename
    try:
        if filename is None:
            onnx = sorted(f for f in list_files(spec.repo_id, token=token) if f.endswith(".onnx"))
            if len(onnx) != 1:
                raise EncoderUnavailable(
                    f"speaker encoder {spec}: the repository holds {len(onnx)} .onnx files ({', '.join(onnx) or 'none'}); "
                    f"name one as {HUB_PREFIX}{spec.repo_id}/<file>.onnx"
                )
            filename = onnx[0]
        return Path(download(repo_id=spec.repo_id, filename=filename, token=token))
    except EncoderUnavailable:
        raise
    except Exception as exc:  # network, HTTP and cache errors all mean "not available"
        raise _hub_error(EncoderSpec(spec.kind, spec.repo_id, filename), exc) from exc


_configured: tuple[str, str | None] | None = None
_configured_lock = threading.Lock()


def configure(text: str, token: str | None = None) -> EncoderSpec:
    """Set the process's choice from its Settings (flags included), checked at once, so a
    bad value stops the start rather than the first labelled request."""
    global _configured
    spec = parse_spec(text)
    with _configured_lock:
        _configured = (text, token or None)
    return spec


def _configured_choice() -> tuple[str, str | None]:
    """(SPEAKER_ENCODER, HF_TOKEN or None): as `configure` set them, else the environment's."""
    with _configured_lock:
        configured = _configured
    if configured is None:
        from settings import Settings

        settings = Settings.from_env()
        configured = (settings.speaker_encoder, settings.hf_token.get_secret_value() or None)
    return configured


def configured_thresholds() -> Thresholds:
    """The thresholds of the encoder SPEAKER_ENCODER names, without loading it (a live
    stream sets its cut while the encoder is still loading). A bad value gives the
    default's; loading it then says what is wrong."""
    try:
        return THRESHOLDS[parse_spec(_configured_choice()[0]).kind]
    except ValueError:
        return THRESHOLDS[RESEMBLYZER]


def load_encoder(text: str | None = None, token: str | None = None) -> SpeakerEncoder:
    """The encoder `text` names (default: the configured choice, else SPEAKER_ENCODER from
    the environment). Raises EncoderMissing / EncoderUnavailable when it cannot be had."""
    if text is None:
        text, token = _configured_choice()
    try:
        spec = parse_spec(text)
    except ValueError as exc:
        raise EncoderUnavailable(str(exc)) from exc
    if spec.kind == RESEMBLYZER:
        from engine.speakers.encoder import VoiceEncoder

        return VoiceEncoder()
    path = fetch(spec, token)
    from engine.speakers.onnx_encoder import OnnxEncoder

    try:
        return OnnxEncoder(path)
    except Exception as exc:  # a corrupt or unexpected model: say which and why
        raise EncoderUnavailable(f"speaker encoder {spec} ({path}) cannot be loaded: {exc}") from exc
