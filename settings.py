"""All configuration in one typed place: environment variables, overridable by CLI flags.

Every field names its environment variable; the README's configuration table is
generated from the same list (`python -m settings --markdown`). Values are validated by
pydantic-settings when the settings are read: a malformed value stops the start with the
variable's name and what was wrong (`SettingsError`), and the secrets (`API_KEY`,
`HF_TOKEN`, `OPENAI_API_KEY`) are `SecretStr`, so no repr, log line or traceback prints them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Whisper's input rate: every layer hands audio around as 16 kHz mono float32
#: (engine.base re-exports it for the engine's callers).
SAMPLE_RATE = 16_000

#: The page's transcripts (web/store.py), unless DATA_DIR says otherwise.
DEFAULT_DATA_DIR = "~/.local/share/rt-whisper"


class SettingsError(ValueError):
    """A setting's value is unusable; the message names the variable (and its flag)."""


def _field(env: str, default: Any, help: str) -> Any:
    """One setting: its environment variable, default and README help text (the field's
    type annotation decides how the value is parsed and checked)."""
    return Field(default, validation_alias=env, description=help, json_schema_extra={"env": env})


def env_name(info: FieldInfo) -> str:
    """The environment variable a settings field is read from."""
    return str(info.validation_alias)


def flag_name(name: str) -> str:
    """The `--flag` of a settings field (`max_streams` -> `--max-streams`)."""
    return "--" + name.replace("_", "-")


class Settings(BaseSettings):
    """The app's settings; `Settings()` reads the environment (empty values mean the default)."""

    model_config = SettingsConfigDict(
        env_ignore_empty=True,
        populate_by_name=True,  # Settings(max_streams=3) as well as MAX_STREAMS=3
        validate_assignment=True,  # tests and flags set fields later; still checked
        protected_namespaces=(),  # `model` and `model_cache` are our names, not pydantic's
        extra="ignore",
    )

    # Engine
    engine: Literal["vllm", "remote"] = _field("ENGINE", "vllm", "`vllm` (in-process) or `remote` (OpenAI-compatible endpoint)")
    model: str = _field(
        "MODEL",
        "",
        "Hugging Face repo id, local directory, or `embedded:tiny.en` / `embedded:base`. "
        "Empty: `openai/whisper-large-v3-turbo` on a GPU, `embedded:tiny.en` on CPU",
    )
    model_cache: str = _field(
        "MODEL_CACHE", "~/.cache/rt-whisper", "Where converted embedded models are kept"
    )
    device: str = _field("DEVICE", "auto", "`auto`, `cpu` or `cuda`")
    max_num_seqs: int = _field("MAX_NUM_SEQS", 0, "Concurrent decodes batched by vLLM (0: 8 on CPU, 64 on GPU)")
    kv_cache_mb: int = _field("KV_CACHE_MB", 0, "KV cache size in MiB on CPU (0: 256)")
    gpu_memory_utilization: float = _field(
        "GPU_MEMORY_UTILIZATION", 0.85, "Share of GPU memory vLLM may take")
    enforce_eager: Literal["auto", "true", "false"] = _field(
        "ENFORCE_EAGER", "auto", "`auto`, `true` or `false`: skip torch.compile / CUDA graphs")
    encoder_window: str = _field(
        "ENCODER_WINDOW",
        "bucketed",
        "`bucketed`: the encoder's window follows the audio (10/15/20/30 s, at least 1 s of silence after the speech; "
        "about 2x the throughput on short utterances at the same WER), `full`: 30 s for every clip (stock Whisper; "
        "comparison and fallback), or bucket sizes in seconds with optional padding such as `10,20,30+2`",
    )
    cpu_dtype: Literal["float32", "bfloat16-encoder", "bfloat16", "auto"] = _field(
        "CPU_DTYPE",
        "auto",
        "CPU only: `auto` (a bfloat16 encoder and a float32 decoder where the CPU has AVX-512 BF16 or AMX: "
        "the same text, about 1.2x the throughput; float32 elsewhere), `float32`, `bfloat16-encoder` "
        "(that split, refused with the reason on other CPUs) or `bfloat16` (the decoder too: faster still, "
        "slightly higher WER)",
    )
    kv_cache_dtype: str = _field("KV_CACHE_DTYPE", "auto", "`auto` (the model dtype) or a vLLM dtype; `fp8` is honoured on compute capability 9.x only (H100, H200), refused with the reason elsewhere")
    # Remote endpoint
    endpoint_url: str = _field(
        "ENDPOINT_URL", "", "Base URL of an OpenAI-compatible API, path prefix included (e.g. `https://x.endpoints.huggingface.cloud/api/v1`)"
    )
    hf_token: SecretStr = _field("HF_TOKEN", "", "Bearer token for the remote endpoint (or set `OPENAI_API_KEY`)")
    openai_api_key: SecretStr = _field("OPENAI_API_KEY", "", "Bearer token for the remote endpoint when `HF_TOKEN` is empty")
    remote_model: str = _field("REMOTE_MODEL", "", "Model name sent to the remote endpoint")
    remote_timeout_s: float = _field("REMOTE_TIMEOUT_S", 60.0, "Seconds to wait for one remote response (connect: 10 s at most)")
    remote_retries: int = _field("REMOTE_RETRIES", 3, "Retries (with backoff) on 429, 5xx, timeouts and dropped connections")
    remote_response_format: Literal["json", "verbose_json"] = _field(
        "REMOTE_RESPONSE_FORMAT", "json", "`json` or `verbose_json` (segments and confidence signals, when the endpoint offers them)"
    )
    remote_audio_format: Literal["flac", "wav"] = _field("REMOTE_AUDIO_FORMAT", "flac", "How audio is uploaded to the remote endpoint: `flac` or `wav` (16 kHz mono)")
    remote_align_model: str = _field("REMOTE_ALIGN_MODEL", "", "A local copy of the remote endpoint's Whisper model (directory, `embedded:*` name, or hub id already in the local cache; never downloaded) that times the words when the endpoint returns none; empty: such words stay empty and the answer says why")
    remote_concurrency: int = _field("REMOTE_CONCURRENCY", 8, "Requests in flight to the remote endpoint at once")
    # Streaming (page and realtime WebSocket)
    min_silence_ms: int = _field("MIN_SILENCE_MS", 500, "Silence that ends an utterance (ms)")
    turn_detection: Literal["silence", "semantic"] = _field(
        "TURN_DETECTION",
        "semantic",
        "What ends an utterance: `semantic` (the Smart Turn model, asked after 200 ms of silence, ends a finished "
        "sentence at once when the pause's decode ends it too, and keeps a pause it judges mid-sentence open up to "
        "0.8 s: finals 0.13 s sooner and half the split sentences of 500 ms of silence, BENCHMARKS.md) or `silence` "
        "(`MIN_SILENCE_MS` of it)",
    )
    live_word_times: bool = _field("LIVE_WORD_TIMES", False, "Live finals (page, realtime `words`, History) carry each word's time and probability: an aligning pass per final (see BENCHMARKS.md, word times)")
    live_partial_word_times: bool = _field("LIVE_PARTIAL_WORD_TIMES", False, "With LIVE_WORD_TIMES: partials carry word times too (realtime `...partial` events get `words`): an aligning pass per partial (see BENCHMARKS.md, word times)")
    live_speakers: bool = _field("LIVE_SPEAKERS", False, "Live finals (page, realtime `speaker`, History) carry a speaker label, Speaker 1, 2...: each final's voice is embedded and grouped online (see README, Speakers)")
    speaker_encoder: str = _field("SPEAKER_ENCODER", "resemblyzer", "Voice encoder for speaker labels (files and live): `resemblyzer` (its weights ship in its PyPI wheel: offline) or `hub:<repo_id>[/<file>.onnx]`, a WeSpeaker-style ONNX model fetched from the Hugging Face hub at first use (`HF_TOKEN`, cached under `HF_HOME`; not measured here); see README, Speakers")
    partial_interval_s: float = _field("PARTIAL_INTERVAL_S", 0.6, "New audio between partial decodes (s); raised automatically under load")
    vad_threshold: float = _field("VAD_THRESHOLD", 0.5, "Silero speech probability that starts an utterance")
    max_streams: int = _field("MAX_STREAMS", 16, "Concurrent live streams (page + WebSocket); 0 = no limit")
    language: str = _field("LANGUAGE", "", "Default language of live streams (empty: detect; English-only models: en)")
    realtime_idle_s: float = _field("REALTIME_IDLE_S", 300.0, "A realtime WebSocket that sends no audio this long is closed (other events do not count)")
    realtime_backlog_s: float = _field("REALTIME_BACKLOG_S", 30.0, "Realtime audio accepted ahead of real time (s); beyond, chunks get a `rate_limited` error")
    realtime_max_finals: int = _field("REALTIME_MAX_FINALS", 4, "Finals decoded at once per realtime connection; beyond, its next events wait")
    drain_timeout_s: float = _field("DRAIN_TIMEOUT_S", 20.0, "On SIGTERM (a restart or deploy): seconds the finals in flight and running jobs get before the process exits")
    # Server
    server_name: str = _field(
        "GRADIO_SERVER_NAME", "127.0.0.1", "Address the page and the API listen on (Gradio's own variable; the Docker image sets `0.0.0.0`)"
    )
    server_port: int = _field("GRADIO_SERVER_PORT", 7860, "Port of the page and the API (Gradio's own variable)")
    space_id: str = _field(
        "SPACE_ID", "", "Set by Hugging Face Spaces: `TURN_PROVIDER=auto` then relays WebRTC, and transcripts go to `/data` when writable"
    )
    # Page
    turn_provider: str = _field(
        "TURN_PROVIDER",
        "auto",
        "WebRTC relay for the page: `auto` (TURN via FastRTC's Cloudflare/Hugging Face helper with `HF_TOKEN` on a Space, none elsewhere), `none`, `hf` or `cloudflare` (`CLOUDFLARE_TURN_KEY_ID` / `CLOUDFLARE_TURN_KEY_API_TOKEN`)",
    )
    data_dir: str = _field(
        "DATA_DIR",
        DEFAULT_DATA_DIR,
        "Where the page's transcripts are kept (one SQLite file). On a Space with persistent storage "
        "(`SPACE_ID` set, `/data` writable) the default is `/data/rt-whisper`",
    )
    database_url: SecretStr = _field("DATABASE_URL", "", "PostgreSQL for the transcripts instead of the SQLite file in `DATA_DIR` (`postgresql://USER:PASSWORD@HOST:PORT/DATABASE`, the database must exist): one store shared by every app replica")
    browser_key: SecretStr = _field("BROWSER_SECRET", "", "Key of the browser id the page keeps in the browser (`gr.BrowserState`); give every replica the same one (empty: one made once and kept in the transcript database)")
    replica: str = _field("REPLICA", "", "Name of this app process, the `replica` label on every /metrics series (empty: the host name)")
    # HTTP API
    api_key: SecretStr = _field(
        "API_KEY",
        "",
        "If set, every way in needs it: /v1/* (`Authorization: Bearer <API_KEY>`), /v1/realtime, the page and its "
        "uploads (log in with any user name and the key as password), /docs. /health and /metrics stay open",
    )
    public_page: bool = _field(
        "PUBLIC_PAGE", False, "With API_KEY set, `true` keeps the page (and its uploads and live streams) open to anyone on purpose")
    # Limits
    max_audio_seconds: float = _field("MAX_AUDIO_SECONDS", 4 * 3600.0, "Longest file accepted (seconds)")
    max_upload_mb: float = _field("MAX_UPLOAD_MB", 200.0, "Largest upload accepted (MiB)")
    max_jobs: int = _field("MAX_JOBS", 2, "Files transcribed at once (API and page together); more wait in the queue")
    max_queued: int = _field(
        "MAX_QUEUED", 8, "Files waiting for a free job; beyond that a 429 with Retry-After (API) or a message (page)")

    @model_validator(mode="after")
    def _resolve_paths(self) -> "Settings":
        """`~` expanded; on a Space with writable `/data`, transcripts go there by default."""
        cache = os.path.expanduser(self.model_cache)
        data_dir = self.data_dir
        if data_dir == DEFAULT_DATA_DIR and self.space_id and os.access("/data", os.W_OK):
            data_dir = "/data/rt-whisper"  # a Space's persistent storage survives restarts
        data_dir = os.path.expanduser(data_dir)
        # object.__setattr__: assigning through validation would run this validator again.
        object.__setattr__(self, "model_cache", cache)
        object.__setattr__(self, "data_dir", data_dir)
        return self

    @property
    def remote_token(self) -> str:
        """The remote endpoint's bearer token: `HF_TOKEN`, else `OPENAI_API_KEY` (may be empty)."""
        return self.hf_token.get_secret_value() or self.openai_api_key.get_secret_value()

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        """The environment's settings (and `overrides` by field name, which win).

        Raises `SettingsError` naming each bad variable, e.g. `MAX_STREAMS='lots': Input
        should be a valid integer, unable to parse string as an integer`."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(describe(exc, set(overrides))) from None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, names: list[str] | None = None) -> None:
        """Expose settings as `--flag` options whose default is the environment value."""
        for name, info in cls.model_fields.items():
            if names is not None and name not in names:
                continue
            parser.add_argument(flag_name(name), dest=name, default=None, help=f"{info.description} [env {env_name(info)}]")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Settings":
        """The environment's settings with the flags that were given on top."""
        overrides = {name: value for name in cls.model_fields if (value := getattr(args, name, None)) is not None}
        return cls.from_env(**overrides)


def describe(exc: ValidationError, from_flags: frozenset[str] | set[str] = frozenset()) -> str:
    """One line per bad value, naming the variable (or the flag) and the value given."""
    lines = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        name = next((n for n, i in Settings.model_fields.items() if key in (n, env_name(i))), key)
        info = Settings.model_fields.get(name)
        where = flag_name(name) if name in from_flags else (env_name(info) if info is not None else key)
        value = error.get("input")
        shown = "(secret)" if info is not None and info.annotation is SecretStr else repr(value)
        lines.append(f"{where}={shown}: {error['msg']}")
    return "; ".join(lines)


def eval_dir() -> Path:
    """The larger evaluation set for tests and benchmarks (not an app setting, so not in the
    table): `EVAL_DIR`, else `../shared/eval` beside this checkout. It may not exist."""
    raw = os.environ.get("EVAL_DIR")
    return Path(raw).expanduser() if raw else Path(__file__).resolve().parent.parent / "shared" / "eval"


def vad_model_override() -> Path | None:
    """`SILERO_VAD_ONNX`: a Silero VAD ONNX file to use instead of the one the silero-vad
    package carries (an air-gapped copy elsewhere). Read where the VAD model is loaded,
    which has no Settings object at hand, so it is a function like `eval_dir`."""
    raw = os.environ.get("SILERO_VAD_ONNX")
    return Path(raw).expanduser() if raw else None


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for info in Settings.model_fields.values():
        default = info.default.get_secret_value() if isinstance(info.default, SecretStr) else info.default
        rows.append(f"| `{env_name(info)}` | `{default}` | {info.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
