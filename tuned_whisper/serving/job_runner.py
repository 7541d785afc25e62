"""`JobRunner`: the deployment that runs transcription jobs, beside the ingress and the model.

Each replica runs `jobs.workers` workers. They claim jobs from the store the ingress writes to, and
transcribe them through the same long-form path as every request (`RayBackend`, windows batched on the
`WhisperASR` replicas), at background priority: after every interactive window. The ingress never
decodes a job's audio, so a backlog of long files does not load the replicas that answer the API and the
UI, and killing a runner loses nothing: its job's lease runs out and a runner takes the job over from its
last finished window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ray.serve.handle import DeploymentHandle

from tuned_whisper.audio import Samples
from tuned_whisper.config import Settings
from tuned_whisper.engine.base import ProgressCallback
from tuned_whisper.engine.longform import WindowLog
from tuned_whisper.types import TranscribeOptions, Transcript

logger = logging.getLogger("tuned_whisper.jobs")


class JobRunner:
    """One job-runner replica: its workers start on the replica's event loop and stop when it stops."""

    def __init__(self, model: DeploymentHandle, settings: dict[str, Any]) -> None:
        from tuned_whisper.jobs import open_configured_store
        from tuned_whisper.serving.ray_backend import RayBackend

        self.settings = Settings.model_validate(settings)
        self.store = open_configured_store(self.settings.jobs)
        self.backend = RayBackend(model, self.settings)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Serve may build the replica off its event loop; then the first health check starts the workers.
        with contextlib.suppress(RuntimeError):
            self.start()

    def start(self) -> None:
        from tuned_whisper.jobs.worker import JobWorker

        if self._tasks or self._stop.is_set():
            return
        asyncio.get_running_loop()  # RuntimeError off the loop: not yet
        for _ in range(self.settings.jobs.workers):
            worker = JobWorker(self.store, self._transcribe, self.settings.jobs)
            self._tasks.append(asyncio.create_task(worker.run(self._stop)))
        logger.info("%d job worker(s) started", len(self._tasks))

    async def check_health(self) -> None:
        """Serve's periodic health check; the first one on the replica's loop starts the workers."""
        self.start()

    def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()

    def __del__(self) -> None:
        """Serve's graceful stop (also without a drain, as `serve.shutdown()` does it): the workers stop
        before the replica's thread pool goes, so their loop does not spin on a closed pool."""
        if getattr(self, "_tasks", None) is not None:
            self.stop()

    async def _transcribe(
        self,
        audio: Samples,
        options: TranscribeOptions,
        progress: ProgressCallback,
        caller: str,
        log: WindowLog,
    ) -> Transcript:
        return await self.backend.transcribe(audio, options, progress, caller=caller, partial=True, log=log)
