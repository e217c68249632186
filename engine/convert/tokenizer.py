"""The checkpoint's vocabulary -> a complete Hugging Face Whisper tokenizer.

CTranslate2 checkpoints ship a tokenizer.json without the timestamp tokens; this adds
them, checks the control-token layout Whisper relies on, and writes the side files the
fast and slow WhisperTokenizer paths read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.languages import LANGUAGE_TOKEN

N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in 0.02 s steps


@dataclass(frozen=True)
class SpecialTokens:
    """Whisper control token ids, looked up in the checkpoint's own vocabulary."""

    eot: int
    sot: int
    translate: int
    transcribe: int
    startoflm: int
    startofprev: int
    nospeech: int
    notimestamps: int
    timestamp_begin: int
    languages: dict[str, int]

    @property
    def special_ids(self) -> list[int]:
        """Ids HF marks as special: eot, sot, languages and control tokens (not timestamps)."""
        return list(range(self.eot, self.timestamp_begin))


def read_vocabulary(src_dir: Path) -> list[str]:
    """The checkpoint's vocabulary, index = token id.

    Recent CTranslate2 converters write vocabulary.json (a JSON list); older ones, and
    many published faster-whisper checkpoints, have vocabulary.txt, one token a line. That one
    is split on '\\n' only: str.splitlines would also split on characters like U+2028,
    and an empty token (id 50256 of the multilingual vocabulary) is a legitimate line.
    """
    if (src_dir / "vocabulary.json").is_file():
        return list(json.loads((src_dir / "vocabulary.json").read_text(encoding="utf-8")))
    tokens = (src_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    return tokens


def complete_vocabulary(tokens: list[str], vocab_size: int) -> list[str]:
    """Pad with timestamp tokens up to the embedding size, as CTranslate2's converter does."""
    if len(tokens) > vocab_size:
        raise ValueError(f"vocabulary has {len(tokens)} tokens for {vocab_size} embedding rows")
    first = tokens.index("<|0.00|>") if "<|0.00|>" in tokens else len(tokens)
    missing = vocab_size - len(tokens)
    return tokens + ["<|%.2f|>" % ((len(tokens) - first + i) * 0.02) for i in range(missing)]


def find_special_tokens(tokens: list[str]) -> SpecialTokens:
    """Locate control tokens by content, then check the layout Whisper relies on."""
    index = {t: i for i, t in enumerate(tokens)}

    def need(*names: str) -> int:
        for name in names:
            if name in index:
                return index[name]
        raise ValueError(f"vocabulary lacks {names[0]}")

    special = SpecialTokens(
        eot=need("<|endoftext|>"),
        sot=need("<|startoftranscript|>"),
        translate=need("<|translate|>"),
        transcribe=need("<|transcribe|>"),
        startoflm=need("<|startoflm|>"),
        startofprev=need("<|startofprev|>"),
        nospeech=need("<|nospeech|>", "<|nocaptions|>"),
        notimestamps=need("<|notimestamps|>"),
        timestamp_begin=need("<|0.00|>"),
        languages={tokens[i][2:-2]: i for i in range(index["<|startoftranscript|>"] + 1, index["<|translate|>"])},
    )
    _check_special_layout(tokens, special)
    return special


def _check_special_layout(tokens: list[str], s: SpecialTokens) -> None:
    if s.sot != s.eot + 1 or s.timestamp_begin != s.notimestamps + 1:
        raise ValueError(f"unexpected special token layout: {s}")
    timestamps = tokens[s.timestamp_begin :]
    expected = ["<|%.2f|>" % (i * 0.02) for i in range(N_TIMESTAMPS)]
    if timestamps != expected:
        raise ValueError(f"expected {N_TIMESTAMPS} timestamp tokens after <|notimestamps|>")
    bad = [t for t in s.languages if not LANGUAGE_TOKEN.match(f"<|{t}|>")]
    if bad:
        raise ValueError(f"unexpected tokens between <|startoftranscript|> and <|translate|>: {bad}")


def _added_token(token_id: int, content: str, special: bool) -> dict[str, Any]:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": special,
    }


def build_tokenizer_json(tokenizer: dict[str, Any], tokens: list[str], special: SpecialTokens) -> dict[str, Any]:
    """Complete the checkpoint's tokenizer.json so every id in the vocabulary decodes.

    CTranslate2 checkpoints ship a tokenizer.json without the 1501 timestamp tokens (only
    the vocabulary file has them). Missing ids are added (timestamps as non-special, like HF's
    own conversion script); an id whose token disagrees with the vocabulary file is an error,
    since ids are what the weights are indexed by.
    """
    tokenizer = json.loads(json.dumps(tokenizer))  # deep copy
    bpe = tokenizer["model"]["vocab"]
    added = {a["id"]: a for a in tokenizer.get("added_tokens", [])}
    by_id = {i: t for t, i in bpe.items()}
    by_id.update({i: a["content"] for i, a in added.items()})
    for token_id, token in enumerate(tokens):
        known = by_id.get(token_id)
        if known is None:
            added[token_id] = _added_token(token_id, token, special.eot <= token_id < special.timestamp_begin)
        elif known != token:
            raise ValueError(f"token {token_id}: tokenizer.json has {known!r}, the vocabulary {token!r}")
    for token_id in special.special_ids:
        if token_id in added:
            added[token_id]["special"] = True
    extra = [i for i in by_id if i >= len(tokens)]
    if extra:
        raise ValueError(f"tokenizer.json has ids beyond the {len(tokens)} embedding rows: {extra[:5]}")
    tokenizer["added_tokens"] = [added[i] for i in sorted(added)]
    return tokenizer


def merges_lines(tokenizer: dict[str, Any]) -> list[str]:
    """BPE merges as "a b" lines; newer tokenizers store them as [a, b] pairs."""
    merges = tokenizer["model"].get("merges", [])
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def tokenizer_files(tokenizer: dict[str, Any]) -> dict[str, Any]:
    """tokenizer_config.json, special_tokens_map.json and added_tokens.json contents.

    Written besides tokenizer.json so both the fast and the slow (vocab.json/merges.txt)
    WhisperTokenizer paths, and tools that read these files directly, work.
    """
    added = tokenizer["added_tokens"]
    additional = [a["content"] for a in added if a["special"]]
    eot = "<|endoftext|>"
    specials = {"bos_token": eot, "eos_token": eot, "pad_token": eot, "unk_token": eot}
    decoder = {
        str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for a in added
    }
    config = {
        "tokenizer_class": "WhisperTokenizer",
        "processor_class": "WhisperProcessor",
        "model_max_length": 1024,
        "add_prefix_space": False,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,  # Whisper text is BPE-exact; cleanup eats spaces
        **specials,
        "additional_special_tokens": additional,
        "added_tokens_decoder": decoder,
    }
    return {
        "tokenizer_config.json": config,
        "special_tokens_map.json": {**specials, "additional_special_tokens": additional},
        "added_tokens.json": {a["content"]: a["id"] for a in added},
        "vocab.json": tokenizer["model"]["vocab"],
    }
