"""`WhisperASR`: the model deployment. It only runs the model: 30 s windows in, decoded tokens out.

Windows from any number of concurrent requests are gathered by `@serve.batch` and decoded in one forward
pass per (options, language) group. Batch size and wait are live-tunable through `user_config`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from ray.util import metrics

from tuned_whisper.engine.windows import Window, WindowOutput
from tuned_whisper.types import TranscribeOptions

logger = logging.getLogger("tuned_whisper.model")
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64]


@dataclass(frozen=True)
class WindowJob:
    """One window of one request, with how that request wants it decoded."""

    window: Window
    options: TranscribeOptions
    language: str


class WhisperASR:
    """Loads the checkpoint once per replica and decodes batches of windows."""

    def __init__(self, checkpoint: str, engine: dict[str, Any], adapter: str | None = None) -> None:
        from tuned_whisper.config import EngineSettings
        from tuned_whisper.engine.transformers_engine import TransformersTranscriber

        self.engine = TransformersTranscriber(
            checkpoint, EngineSettings(**engine), Path(adapter) if adapter else None
        )
        self.batch_sizes: Counter[int] = Counter()
        self.audio_seconds = 0.0
        self._batch_metric = metrics.Histogram(
            "tw_model_batch_size", description="Windows per forward pass", boundaries=BATCH_BOUNDARIES
        )
        self._audio_metric = metrics.Counter("tw_model_audio_seconds", description="Audio seconds decoded")

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this with `user_config` at start and on every config change, without a restart."""
        size = int(user_config.get("max_batch_size", 8))
        self.decode.set_max_batch_size(size)
        self.decode.set_batch_wait_timeout_s(float(user_config.get("batch_wait_s", 0.1)))
        self.detect.set_max_batch_size(size)
        self.engine.settings = self.engine.settings.model_copy(update={"batch_size": size})

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.1)
    async def decode(self, jobs: list[WindowJob]) -> list[WindowOutput]:
        """Decode a batch of windows (any requests); runs the model off the event loop."""
        self._record(jobs)
        return await asyncio.to_thread(self._decode_groups, jobs)

    def _decode_groups(self, jobs: list[WindowJob]) -> list[WindowOutput]:
        groups: dict[tuple[TranscribeOptions, str], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault((job.options, job.language), []).append(i)
        results: dict[int, WindowOutput] = {}
        for (options, language), indices in groups.items():
            outputs = self.engine.decode_windows([jobs[i].window for i in indices], options, language)
            results.update(zip(indices, outputs, strict=True))
        return [results[i] for i in range(len(jobs))]

    def _record(self, jobs: list[WindowJob]) -> None:
        seconds = sum(len(j.window.samples) - j.window.stride[1] - j.window.stride[2] for j in jobs) / 16000
        self.batch_sizes[len(jobs)] += 1
        self.audio_seconds += seconds
        self._batch_metric.observe(len(jobs))
        self._audio_metric.inc(seconds)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def detect(self, heads: list[np.ndarray]) -> list[tuple[str, float]]:
        """Spoken language of each request's first 30 s, batched like `decode`."""
        return await asyncio.to_thread(self.engine.detect_languages, heads)

    def stats(self) -> dict[str, Any]:
        """This replica's batch-size histogram and audio seconds, for `/metrics` and tests."""
        return {
            "batch_sizes": dict(self.batch_sizes),
            "audio_seconds": self.audio_seconds,
            "time": time.time(),
            "device": self.engine.info.device,
        }

    def info(self) -> dict[str, Any]:
        info = self.engine.info
        return {
            "adapter": info.adapter,
            "checkpoint": info.checkpoint,
            "device": info.device,
            "dtype": info.dtype,
            "is_multilingual": info.is_multilingual,
        }
