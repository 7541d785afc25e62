"""The long-form path over the model deployment: `RayRunner` sends windows to the `WhisperASR` replicas
(which batch them across requests), `RayBackend` is the one transcription backend of every replica that
transcribes through them (the ingress's API, UI and live sessions; the job runners' jobs).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from ray.serve.handle import DeploymentHandle
from ray.util import metrics

from tuned_whisper.audio import Samples
from tuned_whisper.config import Settings
from tuned_whisper.engine.base import ModelInfo, ProgressCallback
from tuned_whisper.engine.batching import WindowJob
from tuned_whisper.engine.longform import LongForm, TextDelta, WindowLog, final
from tuned_whisper.engine.windows import Decoded
from tuned_whisper.serving.api import checkpoint_card
from tuned_whisper.serving.errors import ModelUnavailable
from tuned_whisper.types import TranscribeOptions, Transcript

logger = logging.getLogger("tuned_whisper.ray_backend")
LATENCY_BOUNDARIES = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600]


class RayRunner:
    """The long-form path's `WindowRunner` over the `WhisperASR` deployment's batched `decode`.

    A window whose replica dies under it is sent once more (Serve routes it to a healthy replica, or
    waits for the replacement); a second loss, or a window not back within `timeout_s`, is a 503.
    """

    def __init__(self, model: DeploymentHandle, timeout_s: float) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.retried = 0

    async def decode(self, job: WindowJob) -> Decoded:
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

        lost = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)
        try:
            return await self._once(job)
        except lost as error:
            self.retried += 1
            logger.warning("a model replica was lost mid-window (%s); sending the window again", error)
        try:
            return await self._once(job)
        except lost as error:
            raise ModelUnavailable("the model replicas failed this audio twice; retry") from error

    async def _once(self, job: WindowJob) -> Decoded:
        response = self.model.decode.remote(job)
        try:
            return await asyncio.wait_for(_awaited(response), self.timeout_s)
        except TimeoutError as error:
            response.cancel()
            message = f"the model replicas did not decode a window within {self.timeout_s:g} s; retry"
            raise ModelUnavailable(message, code="model_timeout") from error


async def _awaited(response: Any) -> Decoded:
    return await response


class RayBackend:
    """The API's and UI's `TranscribeBackend`: the one long-form path, windows on the model replicas."""

    def __init__(self, model: DeploymentHandle, settings: Settings) -> None:
        from transformers import WhisperTokenizer
        from transformers.utils import logging as hf_logging

        from tuned_whisper.serving.logs import use_serve_handlers

        use_serve_handlers()
        hf_logging.set_verbosity_error()  # the long-form merge warns about every open last segment
        self.model = model
        self.settings = settings
        tokenizer = WhisperTokenizer.from_pretrained(str(settings.checkpoint))
        self.longform = LongForm(
            tokenizer, settings.engine, windows_in_flight=settings.serve.windows_in_flight
        )
        self.runner = RayRunner(model, settings.serve.window_timeout_s)
        self._info: ModelInfo | None = None
        self.draining = False
        self._latency = metrics.Histogram(
            "tw_request_latency_s", description="Transcription latency", boundaries=LATENCY_BOUNDARIES
        )
        self._audio = metrics.Counter("tw_request_audio_seconds", description="Audio seconds transcribed")

    async def ready(self) -> bool:
        if self.draining:
            return False
        try:
            self._info = ModelInfo(**await asyncio.wait_for(self.model.info.remote(), timeout=5))
        except Exception:
            return False
        return True

    def model_card(self) -> dict[str, Any]:
        info = self._info or ModelInfo(str(self.settings.checkpoint), "replicas", "unknown", True)
        return checkpoint_card(info)

    async def transcribe(
        self,
        audio: Samples,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        *,
        caller: str = "",
        partial: bool = False,
        log: WindowLog | None = None,
    ) -> Transcript:
        """The long-form path with the model replicas as its runner; `caller` scopes window packing,
        `partial` makes it best-effort (decoded after every other waiting window)."""
        stream = self.stream(
            audio, options, progress, caller=caller, eager=False, partial=partial, log=log, deltas=False
        )
        return await final(stream)

    async def stream(
        self,
        audio: Samples,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        *,
        caller: str = "",
        eager: bool = True,
        partial: bool = False,
        log: WindowLog | None = None,
        deltas: bool = True,
    ) -> AsyncIterator[TextDelta | Transcript]:
        """Final text as each window is decoded, then the `Transcript` (for `stream=true`)."""
        started = time.perf_counter()
        caller = caller or f"anonymous-{uuid.uuid4().hex}"
        stream = self.longform.stream(
            audio,
            options,
            self.runner,
            caller=caller,
            progress=progress,
            eager=eager,
            partial=partial,
            log=log,
            deltas=deltas,
        )
        async for item in stream:
            if isinstance(item, Transcript):
                self._latency.observe(time.perf_counter() - started)
                self._audio.inc(item.duration)
            yield item
