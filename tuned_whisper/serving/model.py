"""`WhisperASR`: the model deployment. It only runs a `WindowDecoder`: window jobs in, decodes out.

Window jobs from any number of concurrent requests are batched continuously (the engine's `LocalRunner`:
the jobs that arrive while a batch decodes form the next one) and go through `decode_jobs` (grouped by
options, short clips of one caller packed, Whisper's fallback rules). Batch size and the idle wait are
live-tunable through `user_config`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
from ray.util import metrics

from tuned_whisper.audio import SAMPLE_RATE
from tuned_whisper.engine.batching import BatchReport, WindowJob
from tuned_whisper.engine.windows import Decoded

logger = logging.getLogger("tuned_whisper.model")
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64]
RECENT_PACKS = 256


def _replica_tags() -> dict[str, str]:
    """`deployment` and `replica` for this replica's metrics, so one scrape tells the replicas apart."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        context = serve.get_replica_context()
    except RayServeException:  # not inside a Serve replica (a test that builds the class directly)
        return {"deployment": "WhisperASR", "replica": "local"}
    return {"deployment": context.deployment, "replica": context.replica_id.unique_id}


class WhisperASR:
    """Loads the configured backend once per replica and decodes batches of window jobs."""

    def __init__(
        self,
        checkpoint: str,
        engine: dict[str, Any],
        adapter: str | None = None,
        pack_across_callers: bool = False,
        registry: dict[str, Any] | None = None,
    ) -> None:
        from tuned_whisper.config import EngineSettings, Settings
        from tuned_whisper.engine import load_models
        from tuned_whisper.engine.local import LocalRunner, packing_from
        from tuned_whisper.serving.logs import use_serve_handlers

        use_serve_handlers()

        settings = Settings(
            checkpoint=Path(checkpoint),
            adapter=Path(adapter) if adapter else None,
            engine=EngineSettings(**engine),
            **(registry or {}),  # adapters_dir, adapters_force, max_loaded_adapters
        )
        self.decoder = load_models(settings)
        self.runner = LocalRunner(
            self.decoder,
            settings.engine,
            packing=packing_from(settings.engine, across_callers=pack_across_callers),
            on_batch=self._record,
        )
        self.batch_sizes: Counter[int] = Counter()
        self.audio_seconds = 0.0
        self.windows = 0
        self.packed_clips = 0
        self.recent_packs: deque[tuple[str, ...]] = deque(maxlen=RECENT_PACKS)
        tags = _replica_tags()
        self._batch_metric = metrics.Histogram(
            "tw_model_batch_size",
            description="Window jobs per batch",
            boundaries=BATCH_BOUNDARIES,
            tag_keys=tuple(tags),
        )
        self._audio_metric = metrics.Counter(
            "tw_model_audio_seconds", description="Audio seconds decoded", tag_keys=tuple(tags)
        )
        self._windows_metric = metrics.Counter(
            "tw_model_windows", description="30 s windows decoded", tag_keys=tuple(tags)
        )
        self._packed_metric = metrics.Counter(
            "tw_model_packed_clips", description="Clips decoded packed", tag_keys=tuple(tags)
        )
        for metric in (self._batch_metric, self._audio_metric, self._windows_metric, self._packed_metric):
            metric.set_default_tags(tags)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this with `user_config` at start and on every config change, without a restart."""
        self.runner.batch_size = int(user_config.get("max_batch_size", 16))
        self.runner.wait_s = float(user_config.get("batch_wait_s", 0.0))

    async def decode(self, job: WindowJob) -> Decoded:
        """One window job; jobs of any requests that wait together are decoded in one batch."""
        return await self.runner.decode(job)

    def _record(self, jobs: list[WindowJob], report: BatchReport) -> None:
        seconds = sum(len(j.samples) for j in jobs) / SAMPLE_RATE
        self.batch_sizes[len(jobs)] += 1
        self.audio_seconds += seconds
        self.windows += report.windows
        self.packed_clips += report.packed_clips
        self.recent_packs.extend(report.packs or [])
        self._batch_metric.observe(len(jobs))
        self._audio_metric.inc(seconds)
        if report.windows:
            self._windows_metric.inc(report.windows)
        if report.packed_clips:
            self._packed_metric.inc(report.packed_clips)

    async def detect(self, head: np.ndarray) -> tuple[str, float]:
        """Spoken language of up to 30 s of audio."""
        return (await asyncio.to_thread(self.decoder.detect_languages, [head]))[0]

    def stats(self) -> dict[str, Any]:
        """Batch sizes, windows decoded, packing and audio seconds of this replica (`/metrics`, tests)."""
        return {
            "batch_sizes": dict(self.batch_sizes),
            "audio_seconds": self.audio_seconds,
            "windows": self.windows,
            "packed_clips": self.packed_clips,
            "recent_packs": list(self.recent_packs),
            "time": time.time(),
            "device": self.decoder.info.device,
        }

    def info(self) -> dict[str, Any]:
        info = self.decoder.info
        return {
            "adapter": info.adapter,
            "checkpoint": info.checkpoint,
            "device": info.device,
            "dtype": info.dtype,
            "is_multilingual": info.is_multilingual,
            "backend": info.backend,
        }
