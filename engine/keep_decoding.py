"""A window's decode may not end before its timestamps reach the window's last speech.

Whisper ends a window with <|endoftext|> at a change of speaker or topic and says
nothing of the rest (issue 21's profile: 6 of 11 pieces of the mixed file). The coverage
check then decodes the rest again: a second encoder pass and a second decode. Here the
end-of-text token is simply not allowed while the decode's last timestamp lies before
`end_not_before` (the window's last speech, less a tolerance): the decoder goes on with the
next segment in the same pass, on the encoder output it already has.

The rule is a vLLM per-request logits processor (`AdapterLogitsProcessor`), registered
with the engine (`EngineArgs(logits_processors=...)`) and switched on per request by
`SamplingParams.extra_args[EXTRA_ARG]`: the end-of-text id and the first timestamp
token that allows it. Requests without the argument are not touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

#: `SamplingParams.extra_args` key: (end-of-text id, timestamp begin id, first allowed timestamp id).
EXTRA_ARG = "rt_end_not_before"


def end_allowed(output_ids: list[int], timestamp_begin: int, allowed_from: int) -> bool:
    """Whether the decode so far has a timestamp at or past `allowed_from` (a token id)."""
    for token in reversed(output_ids):
        if token >= timestamp_begin:
            return token >= allowed_from
    return False


class KeepDecodingUntilSound(AdapterLogitsProcessor):
    """End-of-text masked until the decode's timestamps reach the window's last speech."""

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params: Any) -> Callable[[list[int], torch.Tensor], torch.Tensor] | None:
        args = (params.extra_args or {}).get(EXTRA_ARG)
        if not args:
            return None
        eot, timestamp_begin, allowed_from = (int(x) for x in args)

        def mask_end(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            if not end_allowed(output_ids, timestamp_begin, allowed_from):
                logits[eot] = float("-inf")
            return logits

        return mask_end
