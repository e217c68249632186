"""Whisper's decoder prompt and output token conventions, in one place.

vLLM takes the decoder prompt as token ids; building them here (instead of a text
prompt) keeps special tokens unambiguous and lets the timestamp tokens of the output be
parsed into segments without relying on how a tokenizer prints them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from engine.base import MAX_PROMPT_CHARS, Segment, Task, UnsupportedRequest
from engine.languages import LANGUAGE_TOKEN

# Whisper allows at most half of its 448-token context for the previous-text prompt.
MAX_PROMPT_TOKENS = 223
TIMESTAMP_STEP_S = 0.02


@functools.cache
def _bpe_bytes() -> dict[str, int]:
    """Byte-level BPE's printable stand-in character -> the byte it stands for."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


@dataclass(frozen=True)
class WhisperVocabulary:
    """Ids of Whisper's special tokens for one checkpoint (English-only or multilingual)."""

    tokenizer: Tokenizer
    multilingual: bool
    eot: int
    sot: int
    sot_prev: int
    no_timestamps: int
    timestamp_begin: int
    translate: int | None
    transcribe: int | None
    language_ids: dict[str, int]

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> "WhisperVocabulary":
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        config = json.loads((model_dir / "config.json").read_text())

        def tid(token: str) -> int | None:
            return tokenizer.token_to_id(token)

        language_ids = {}
        for token, token_id in tokenizer.get_vocab(with_added_tokens=True).items():
            match = LANGUAGE_TOKEN.match(token)
            if match and token not in ("<|nocaptions|>", "<|nospeech|>"):
                language_ids[match.group(1)] = token_id
        no_timestamps = tid("<|notimestamps|>")
        if no_timestamps is None:
            raise ValueError(f"{model_dir} has no <|notimestamps|> token: not a Whisper tokenizer")
        # English-only checkpoints have 51864 tokens, multilingual ones 51865 or more.
        multilingual = int(config.get("vocab_size", 0)) >= 51865
        return cls(
            tokenizer=tokenizer,
            multilingual=multilingual,
            eot=tid("<|endoftext|>"),
            sot=tid("<|startoftranscript|>"),
            sot_prev=tid("<|startofprev|>"),
            no_timestamps=no_timestamps,
            timestamp_begin=no_timestamps + 1,
            translate=tid("<|translate|>") if multilingual else None,
            transcribe=tid("<|transcribe|>") if multilingual else None,
            language_ids=language_ids if multilingual else {},
        )

    def decoder_prompt(
        self,
        *,
        language: str | None,
        task: Task,
        prompt: str | None,
        timestamps: bool,
    ) -> list[int]:
        """The decoder prefix: [<|startofprev|> prompt] <|sot|> [lang task] <|notimestamps|> or <|0.00|>.

        English-only models take no language or task tokens at all (adding them makes
        them emit nothing, which is what vLLM's own server does wrong with `.en`).
        """
        ids: list[int] = []
        if prompt and prompt.strip():
            # Only the end can survive the token cut: a longer text is not tokenized at all
            # (callers refuse more than MAX_PROMPT_CHARS; this keeps the engine safe alone).
            prompt_ids = self.tokenizer.encode(" " + prompt.strip()[-MAX_PROMPT_CHARS:], add_special_tokens=False).ids
            ids += [self.sot_prev] + prompt_ids[-MAX_PROMPT_TOKENS:]
        ids.append(self.sot)
        if self.multilingual:
            if language is None:
                raise ValueError("a multilingual decoder prompt needs a language; detect it first")
            ids.append(self.language_id(language))
            ids.append(self.translate if task == "translate" else self.transcribe)
        # With timestamps the first output token must be a time. Whisper's own decoder
        # enforces that with a logit rule; without it tiny.en on vLLM often emits
        # <|notimestamps|> itself and the whole window comes back as one untimed segment
        # (then the coverage check cannot see where the speech stopped being decoded).
        # Starting the output at <|0.00|> is what that rule ends up choosing.
        ids.append(self.timestamp_begin if timestamps else self.no_timestamps)
        return ids

    def language_id(self, language: str) -> int:
        code = language.lower().strip()
        if code not in self.language_ids:
            raise UnsupportedRequest(f"unsupported language {language!r}; use an ISO 639-1 code such as 'en' or 'de'")
        return self.language_ids[code]

    def language_of(self, token_id: int) -> str | None:
        for code, tid in self.language_ids.items():
            if tid == token_id:
                return code
        return None

    def token_bytes(self, token_id: int) -> bytes:
        """The UTF-8 bytes a token stands for (byte-level BPE: part of a character maybe)."""
        to_byte = _bpe_bytes()
        return bytes(to_byte[c] for c in self.tokenizer.id_to_token(token_id) or "" if c in to_byte)

    def text_of(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode([t for t in token_ids if t < self.eot])

    def segments_of(self, token_ids: list[int], offset: float, duration: float) -> list[Segment]:
        """Split timestamped output (`<|t0|> text <|t1|><|t1|> text <|t2|>`) into segments.

        Text after the last timestamp (the model stopped before closing it) becomes a
        segment that ends at the end of the audio, so no words are dropped.
        """
        segments: list[Segment] = []
        start: float | None = None
        text_ids: list[int] = []
        for token in token_ids:
            if token >= self.timestamp_begin:
                t = (token - self.timestamp_begin) * TIMESTAMP_STEP_S
                if start is None:
                    start = t
                    continue
                text = self.text_of(text_ids).strip()
                if text:
                    segments.append(Segment(offset + start, offset + min(t, duration), text))
                    text_ids = []
                    start = None
                else:
                    start = t
            elif token < self.eot:
                if start is None:
                    start = 0.0 if not segments else segments[-1].end - offset
                text_ids.append(token)
        text = self.text_of(text_ids).strip()
        if text:
            seg_start = start if start is not None else 0.0
            segments.append(Segment(offset + seg_start, offset + duration, text))
        return segments
