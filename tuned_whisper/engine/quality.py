"""Whisper's decoding rules, the same for every backend: temperature fallback and the silence rule."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tuned_whisper.engine.windows import Decoded
from tuned_whisper.types import TranscribeOptions

if TYPE_CHECKING:
    from tuned_whisper.config import EngineSettings
    from tuned_whisper.engine.base import WindowDecoder


def compression_ratio(text: str) -> float:
    """How well the text compresses with zlib; repetition loops score above 2.4."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class DecodingRules:
    """When a decode is redone at a higher temperature, and when it counts as silence."""

    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6

    @classmethod
    def from_settings(cls, engine: EngineSettings) -> DecodingRules:
        return cls(
            temperatures=tuple(engine.temperatures) or (0.0,),
            compression_ratio_threshold=engine.compression_ratio_threshold,
            log_prob_threshold=engine.log_prob_threshold,
            no_speech_threshold=engine.no_speech_threshold,
        )

    def schedule(self, options: TranscribeOptions) -> tuple[float, ...]:
        """The temperatures to try; a request's own temperature above 0 starts the schedule there."""
        if options.temperature <= 0:
            return self.temperatures
        return (options.temperature, *(t for t in self.temperatures if t > options.temperature))

    def is_silence(self, decoded: Decoded) -> bool:
        if self.no_speech_threshold is None or decoded.no_speech_prob <= self.no_speech_threshold:
            return False
        return self.log_prob_threshold is None or decoded.avg_logprob < self.log_prob_threshold

    def needs_fallback(self, decoded: Decoded) -> bool:
        if self.is_silence(decoded):
            return False
        too_repetitive = (
            self.compression_ratio_threshold is not None
            and decoded.compression_ratio > self.compression_ratio_threshold
        )
        too_unlikely = self.log_prob_threshold is not None and decoded.avg_logprob < self.log_prob_threshold
        return too_repetitive or too_unlikely

    def finish(self, decoded: Decoded) -> Decoded:
        """A silent window keeps its signals but loses its text."""
        if self.is_silence(decoded) and len(decoded.tokens):
            return dataclasses.replace(decoded, tokens=np.zeros(0, np.int64), token_timestamps=None)
        return decoded


def decode_with_fallback(
    decoder: WindowDecoder,
    windows: Sequence[np.ndarray],
    languages: Sequence[str | None],
    options: TranscribeOptions,
    rules: DecodingRules,
    first: Sequence[Decoded | None] | None = None,
) -> list[Decoded]:
    """Decode each window, redoing those that fail the rules at the next temperature; `first` may hold
    attempts already made at the schedule's first temperature."""
    schedule = rules.schedule(options)
    best: dict[int, Decoded] = {}
    done: dict[int, Decoded] = {}
    known = list(languages)
    for step, temperature in enumerate(schedule):
        pending = [i for i in range(len(windows)) if i not in done]
        if not pending:
            break
        tried = [i for i in pending if step == 0 and first is not None and first[i] is not None]
        attempts = {i: first[i] for i in tried} if first is not None else {}
        todo = [i for i in pending if i not in attempts]
        if todo:
            outputs = decoder.decode(
                [windows[i] for i in todo], [known[i] for i in todo], options, temperature
            )
            attempts.update(zip(todo, outputs, strict=True))
        for i, decoded in attempts.items():
            assert decoded is not None
            known[i] = decoded.language  # a fallback keeps the language the first decode found
            if i not in best or decoded.avg_logprob > best[i].avg_logprob:
                best[i] = decoded
            if not rules.needs_fallback(decoded):
                done[i] = decoded
    return [rules.finish(done.get(i, best[i])) for i in range(len(windows))]
