"""The in-process engine: a `WindowRunner` that batches windows of concurrent requests the way a model
replica does, and `Engine`, the synchronous `Transcriber` the CLI, the benchmarks and tests use."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tuned_whisper.engine.base import ModelInfo, ProgressCallback, WindowDecoder
from tuned_whisper.engine.batching import Packing, WindowJob, decode_jobs
from tuned_whisper.engine.longform import LongForm
from tuned_whisper.engine.quality import DecodingRules
from tuned_whisper.engine.windows import WINDOW_SAMPLES, Decoded
from tuned_whisper.types import TranscribeOptions, Transcript

if TYPE_CHECKING:
    from tuned_whisper.config import EngineSettings


def packing_from(engine: EngineSettings, *, across_callers: bool = False) -> Packing | None:
    if not engine.pack_short_audio:
        return None
    return Packing(gap_s=engine.pack_gap_s, max_clip_s=engine.pack_max_clip_s, across_callers=across_callers)


class LocalRunner:
    """Collects the windows that requests in this event loop send and decodes them `batch_size` at once."""

    def __init__(self, decoder: WindowDecoder, engine: EngineSettings) -> None:
        self.decoder = decoder
        self.batch_size = engine.batch_size
        self.rules = DecodingRules.from_settings(engine)
        self.packing = packing_from(engine)
        self._pending: list[tuple[WindowJob, asyncio.Future[Decoded]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def decode(self, job: WindowJob) -> Decoded:
        future: asyncio.Future[Decoded] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let every request that is starting queue its windows first
        while self._pending:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
            jobs = [job for job, _ in batch]
            try:
                outputs = await asyncio.to_thread(decode_jobs, self.decoder, jobs, self.rules, self.packing)
            except Exception as exc:  # every request in the batch learns why
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), output in zip(batch, outputs, strict=True):
                future.set_result(output)


class Engine:
    """A `Transcriber` over any `WindowDecoder`, through the one long-form path."""

    def __init__(self, decoder: WindowDecoder, engine: EngineSettings) -> None:
        self.decoder = decoder
        self.settings = engine
        self.info: ModelInfo = decoder.info
        self.longform = LongForm(decoder.tokenizer, engine, windows_in_flight=max(engine.batch_size, 16))

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, progress: ProgressCallback | None = None
    ) -> Transcript:
        return asyncio.run(self._run([(audio, options)], progress))[0]

    def transcribe_many(self, requests: Sequence[tuple[np.ndarray, TranscribeOptions]]) -> list[Transcript]:
        """Transcribe several requests; their windows share forward passes, short ones share windows."""
        return asyncio.run(self._run(requests, None))

    async def _run(
        self, requests: Sequence[tuple[np.ndarray, TranscribeOptions]], progress: ProgressCallback | None
    ) -> list[Transcript]:
        runner = LocalRunner(self.decoder, self.settings)
        return list(
            await asyncio.gather(
                *(self.longform.transcribe(a, o, runner, progress=progress) for a, o in requests)
            )
        )

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """The most likely language of the first 30 s and its probability."""
        return self.decoder.detect_languages([audio[:WINDOW_SAMPLES]])[0]
