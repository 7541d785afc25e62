"""Many fine-tunes on one replica: the base decoder plus registry adapters loaded on first use, each its own
decoder (CTranslate2: the base with the adapter merged, then exported and cached), at most `capacity` of
them in memory (least recently used goes first).

It is itself a `WindowDecoder`: `decode_jobs` groups a batch's windows by their options, which name the
adapter, so each group is one call here and windows of different models never share a forward pass or a
packed window.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuned_whisper.engine.base import ModelInfo, Vocabulary, WindowDecoder
from tuned_whisper.engine.windows import Decoded
from tuned_whisper.types import TranscribeOptions


class UnknownAdapter(LookupError):
    """A window asked for an adapter the registry does not (or no longer) offer."""


class MultiDecoder:
    """The base `WindowDecoder` and adapters by name; `resolve(name)` gives an adapter's directory."""

    def __init__(
        self,
        base: WindowDecoder,
        resolve: Callable[[str], Path | None],
        load: Callable[[Path], WindowDecoder],
        capacity: int = 4,
    ) -> None:
        self.base = base
        self.resolve = resolve
        self.load = load
        self.capacity = capacity
        self.loaded: OrderedDict[str, WindowDecoder] = OrderedDict()
        self.loads = 0
        self._lock = threading.Lock()

    @property
    def info(self) -> ModelInfo:
        return self.base.info

    @property
    def vocab(self) -> Vocabulary:
        return self.base.vocab

    @property
    def tokenizer(self) -> Any:
        return self.base.tokenizer

    def detect_languages(self, heads: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        return self.base.detect_languages(heads)

    def decode(
        self,
        windows: Sequence[np.ndarray],
        languages: Sequence[str | None],
        options: TranscribeOptions,
        temperature: float,
    ) -> list[Decoded]:
        return self.decoder(options.adapter).decode(windows, languages, options, temperature)

    def decoder(self, adapter: str | None) -> WindowDecoder:
        """The decoder for `adapter` (None: the base), loading it and evicting the least recent if needed."""
        if adapter is None:
            return self.base
        with self._lock:
            if adapter in self.loaded:
                self.loaded.move_to_end(adapter)
                return self.loaded[adapter]
            path = self.resolve(adapter)
            if path is None:
                raise UnknownAdapter(f"no adapter {adapter!r} in the registry")
            decoder = self.load(path)
            self.loads += 1
            self.loaded[adapter] = decoder
            while len(self.loaded) > self.capacity:
                self.loaded.popitem(last=False)
            return decoder
