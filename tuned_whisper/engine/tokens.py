"""`WhisperTokens`: the checkpoint's `tokenizer.json` through the Rust `tokenizers` library, for what a
model replica does with tokens (prompts, special ids, text of a decode).

Transformers' `WhisperTokenizer` costs a model replica about 70 MB (the import and its Python vocabulary)
for the same answers. Anything else (the long-form merge's `_decode_asr`, used where a whole file is
merged in process) is passed to a `WhisperTokenizer` loaded on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np


class WhisperTokens:
    """The subset of `WhisperTokenizer` a decoder needs, without importing Transformers."""

    def __init__(self, checkpoint: str | Path) -> None:
        from tokenizers import Tokenizer

        self.checkpoint = Path(checkpoint)
        self._tokenizer = Tokenizer.from_file(str(self.checkpoint / "tokenizer.json"))
        self.eos_token_id = self._id("<|endoftext|>")
        self.unk_token_id = self.eos_token_id  # Whisper's unknown token is its end of text
        self._previous = self._id("<|startofprev|>")
        self._first_timestamp = self._id("<|0.00|>")

    def _id(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise KeyError(f"the tokenizer of {self.checkpoint} has no {token}")
        return int(token_id)

    def convert_tokens_to_ids(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        return self.unk_token_id if token_id is None else int(token_id)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, tokens: Sequence[int], skip_special_tokens: bool = False) -> str:
        """The text; timestamp tokens are left out, as Transformers does unless asked for them."""
        ids = [int(t) for t in tokens if int(t) < self._first_timestamp]
        return str(self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens))

    def get_prompt_ids(self, text: str) -> np.ndarray:
        """`<|startofprev|>` and the text as Whisper continues it (a leading space)."""
        return np.asarray([self._previous, *self.encode(" " + text.strip())], dtype=np.int64)

    @cached_property
    def _full(self) -> Any:
        from transformers import WhisperTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the long-form merge warns about every open last segment
        return WhisperTokenizer.from_pretrained(str(self.checkpoint))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in {"_tokenizer", "checkpoint"}:
            raise AttributeError(name)
        return getattr(self._full, name)
