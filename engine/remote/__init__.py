"""The remote engine: Whisper behind an OpenAI-compatible HTTP endpoint (`ENGINE=remote`).

- `engine.py`: `RemoteEngine`, the engine contract on the official `openai` async client;
- `limiter.py`: requests in flight, live finals before a long file's pieces;
- `errors.py`: what each failure means, in words that say what to fix, without secrets;
- `parsing.py`: the audio uploaded and the answer shapes read.
"""

from engine.remote.engine import RemoteEngine
from engine.remote.errors import RemoteError, UpstreamRejected
from engine.remote.parsing import encode_audio

__all__ = ["RemoteEngine", "RemoteError", "UpstreamRejected", "encode_audio"]
