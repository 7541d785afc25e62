"""The in-process engine: a `WindowRunner` that batches windows of concurrent requests the way a model
replica does, and `Engine`, the synchronous `Transcriber` the CLI, the benchmarks and tests use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from tuned_whisper.audio import Samples
from tuned_whisper.engine.base import ModelInfo, ProgressCallback, WindowDecoder
from tuned_whisper.engine.batching import BatchReport, Packing, WindowBudget, WindowJob, decode_jobs
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
    """Continuous batching: window jobs sent while a batch decodes wait, and all of them (up to
    `batch_size`) form the next batch; an idle runner starts on a job at once (after `wait_s`).

    The model replica runs this too: on a 2-core CPU, `@serve.batch`'s timer closed batches before the
    jobs that arrived during the previous forward pass were in its queue (batches of 1-2 at 16 clients),
    which left nothing to pack.
    """

    def __init__(
        self,
        decoder: WindowDecoder,
        engine: EngineSettings,
        *,
        packing: Packing | None = None,
        wait_s: float = 0.0,
        on_batch: Callable[[list[WindowJob], BatchReport], None] | None = None,
    ) -> None:
        self.decoder = decoder
        self.batch_size = engine.batch_size
        self.wait_s = wait_s
        self.rules = DecodingRules.from_settings(engine)
        self.packing = packing if packing is not None else packing_from(engine)
        self.on_batch = on_batch
        self._pending: list[tuple[WindowJob, asyncio.Future[Decoded]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def decode(self, job: WindowJob) -> Decoded:
        future: asyncio.Future[Decoded] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(self.wait_s)  # let every request that is starting queue its windows first
        while self._pending:
            batch = self._next_batch()
            batch = [(job, future) for job, future in batch if not future.done()]  # callers that left
            jobs = [job for job, _ in batch]
            report = BatchReport()
            try:
                outputs = await asyncio.to_thread(
                    decode_jobs, self.decoder, jobs, self.rules, self.packing, report
                )
            except Exception as exc:  # every request in the batch learns why
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(jobs, report)
            for (_, future), output in zip(batch, outputs, strict=True):
                if not future.done():
                    future.set_result(output)
            await asyncio.sleep(0)  # requests that arrived meanwhile join the next batch

    def _next_batch(self) -> list[tuple[WindowJob, asyncio.Future[Decoded]]]:
        """The oldest jobs that fill `batch_size` windows, a short clip that may be packed counting for its
        share of one (so that a batch of short clips packs into as many windows as one of long audio);
        partials only when nothing else waits: on a CPU a batch costs the sum of its windows, so a final
        sharing one with partials would wait for all of them."""
        wanted = [entry for entry in self._pending if not entry[0].partial] or self._pending
        batch: list[tuple[WindowJob, asyncio.Future[Decoded]]] = []
        budget = WindowBudget(self.packing)
        for entry in wanted:
            if batch and budget.windows(adding=entry[0]) > self.batch_size:
                break
            batch.append(entry)
            budget.add(entry[0])
        taken = {id(entry) for entry in batch}
        self._pending = [entry for entry in self._pending if id(entry) not in taken]
        return batch


class Engine:
    """A `Transcriber` over any `WindowDecoder`, through the one long-form path."""

    def __init__(self, decoder: WindowDecoder, engine: EngineSettings) -> None:
        self.decoder = decoder
        self.settings = engine
        self.info: ModelInfo = decoder.info
        self.longform = LongForm(decoder.tokenizer, engine, windows_in_flight=max(engine.batch_size, 16))

    def transcribe(
        self, audio: Samples, options: TranscribeOptions, progress: ProgressCallback | None = None
    ) -> Transcript:
        return asyncio.run(self._run([(audio, options)], progress))[0]

    def transcribe_many(self, requests: Sequence[tuple[Samples, TranscribeOptions]]) -> list[Transcript]:
        """Transcribe several requests; their windows share forward passes, short ones share windows."""
        return asyncio.run(self._run(requests, None))

    async def _run(
        self, requests: Sequence[tuple[Samples, TranscribeOptions]], progress: ProgressCallback | None
    ) -> list[Transcript]:
        # Every request's speech is found before any window is decoded, so that the first batches hold
        # (and pack) all the short requests, not the ones whose filter happened to finish first.
        speeches = await asyncio.gather(*(asyncio.to_thread(self.longform.speech, a) for a, _ in requests))
        runner = LocalRunner(self.decoder, self.settings)
        return list(
            await asyncio.gather(
                *(
                    self.longform.transcribe(a, o, runner, progress=progress, speech=s)
                    for (a, o), s in zip(requests, speeches, strict=True)
                )
            )
        )

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """The most likely language of the first 30 s and its probability."""
        return self.decoder.detect_languages([audio[:WINDOW_SAMPLES]])[0]
