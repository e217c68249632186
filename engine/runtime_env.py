"""Environment variables that must be set before vLLM or huggingface_hub is imported.

Both read their variables once, at import: `huggingface_hub.constants` takes `HF_HOME`,
`vllm.envs` takes `VLLM_CACHE_ROOT` (default `~/.cache/vllm`, its torch.compile and
other caches) and the usage-statistics switches. So the entry points (`app.py`,
`python -m engine`) call `apply_runtime_env()` first thing.

* Usage statistics off: vLLM reports usage to its servers at start unless one of
  `VLLM_NO_USAGE_STATS=1`, `VLLM_DO_NOT_TRACK=1`, `DO_NOT_TRACK=1` is set
  (`vllm/usage/usage_lib.py`, `is_usage_stats_enabled`); `DO_NOT_TRACK=1` also turns off
  huggingface_hub's telemetry (`huggingface_hub/constants.py`). An offline app should not
  call out.
* Caches on persistent storage: on a Hugging Face Space with persistent storage (`SPACE_ID`
  set, `/data` writable; the same rule as `DATA_DIR` in settings.py) the weights
  (`HF_HOME`, ~1.6 GB for large-v3-turbo) and vLLM's compile cache (`VLLM_CACHE_ROOT`)
  go under `/data`, so a restart neither downloads nor compiles again.

A variable the user set is never changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, MutableMapping

#: A Space's persistent storage, when the Space has it.
SPACE_DATA = "/data"
USAGE_STATS_OFF = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def runtime_env(environ: Mapping[str, str], *, writable: Callable[[str], bool]) -> dict[str, str]:
    """The variables to add to `environ` (only those it does not set already)."""
    wanted = dict(USAGE_STATS_OFF)
    if environ.get("SPACE_ID") and writable(SPACE_DATA):
        wanted["HF_HOME"] = f"{SPACE_DATA}/huggingface"
        wanted["VLLM_CACHE_ROOT"] = f"{SPACE_DATA}/vllm"
    return {name: value for name, value in wanted.items() if not environ.get(name)}


def _writable(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)


def apply_runtime_env(
    environ: MutableMapping[str, str] | None = None, *, writable: Callable[[str], bool] = _writable
) -> dict[str, str]:
    """Set `runtime_env`'s variables in the process environment; returns what was set."""
    environ = os.environ if environ is None else environ
    added = runtime_env(environ, writable=writable)
    environ.update(added)
    return added
