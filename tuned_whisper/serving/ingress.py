"""`GradioServer`: the Serve ingress. FastAPI with the API under `/v1`, the Gradio UI at `/`, health checks.

It decodes uploads with ffmpeg, cuts them into 30 s windows and sends the windows to the `WhisperASR`
replicas, which batch windows across requests; it then merges each request's windows (tokenizer only).
The FastAPI and Gradio apps are built on the replica (`__serve_build_asgi_app__`): a Gradio app cannot be
pickled, and Ray's own `GradioServer` integration does not work with Gradio 6.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.util import metrics

from tuned_whisper.audio import Samples
from tuned_whisper.config import Settings
from tuned_whisper.engine.base import ModelInfo, ProgressCallback
from tuned_whisper.engine.batching import WindowJob
from tuned_whisper.engine.longform import LongForm, TextDelta, WindowLog, final
from tuned_whisper.engine.windows import Decoded
from tuned_whisper.serving.api import checkpoint_card, create_app
from tuned_whisper.serving.errors import ModelUnavailable
from tuned_whisper.serving.realtime import RealtimeEndpoint, add_realtime_route
from tuned_whisper.types import TranscribeOptions, Transcript

logger = logging.getLogger("tuned_whisper.ingress")
LATENCY_BOUNDARIES = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600]
LIVE_SECRET_TTL_S = 60  # the UI page connects right after asking; the session then lives on


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


class JobRunners:
    """The job store, the job routes over it, and this replica's workers, which transcribe through the
    same long-form path as every request, at background priority (after every interactive window)."""

    def __init__(self, backend: RayBackend, settings: Settings) -> None:
        from tuned_whisper.jobs import open_store
        from tuned_whisper.serving.jobs_api import JobsApi

        jobs = settings.jobs
        jobs.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_store(jobs.database_url or jobs.data_dir / "jobs.sqlite3")
        self.api = JobsApi(self.store, jobs, settings.api)
        self.backend = backend
        self.settings = jobs
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        from tuned_whisper.jobs.worker import JobWorker

        if self._tasks or self._stop.is_set():
            return
        for _ in range(self.settings.workers):
            worker = JobWorker(self.store, self._transcribe, self.settings)
            self._tasks.append(asyncio.create_task(worker.run(self._stop)))
        logger.info("%d job worker(s) started", len(self._tasks))

    def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()

    async def _transcribe(
        self,
        audio: Samples,
        options: TranscribeOptions,
        progress: ProgressCallback,
        caller: str,
        log: WindowLog,
    ) -> Transcript:
        return await self.backend.transcribe(audio, options, progress, caller=caller, partial=True, log=log)


@serve.ingress()
class GradioServer:
    """The ingress deployment; `model` is the bound `WhisperASR` deployment."""

    def __init__(self, model: DeploymentHandle, settings: dict[str, Any]) -> None:
        logging.basicConfig(level=logging.INFO)
        self.settings = Settings.model_validate(settings)
        self.model = model
        self.backend = RayBackend(model, self.settings)
        self.realtime = RealtimeEndpoint(self.backend, self.settings.api, self.settings.realtime)
        self.in_flight = 0
        self.jobs = JobRunners(self.backend, self.settings) if self.settings.jobs.enabled else None
        if self.jobs is not None:
            # Without an event loop in this thread the workers cannot start here; the first health check
            # (on the replica's loop) starts them.
            with contextlib.suppress(RuntimeError):
                self.jobs.start()

    async def check_health(self) -> None:
        """Serve's periodic health check; it also starts the job workers on this replica's event loop."""
        if self.jobs is not None:
            self.jobs.start()

    def __serve_build_asgi_app__(self) -> FastAPI:
        from tuned_whisper.adapters import AdapterRegistry

        registry = AdapterRegistry(self.settings.adapters_dir, self.settings.adapters_force)
        app = create_app(self.backend, self.settings.api, self.jobs.api if self.jobs else None, registry)
        app.middleware("http")(self._track)
        app.add_api_route("/metrics", self._metrics, methods=["GET"], response_class=PlainTextResponse)
        self.realtime.adapter_for = app.state.models.adapter_for
        add_realtime_route(app, self.realtime)
        if self.settings.serve.ui:
            from tuned_whisper.serving.ui import mount_ui

            mount_ui(app, self.backend, max_audio_s=self.settings.max_audio_s, live_secret=self._live_secret)
        return app

    def _live_secret(self) -> str:
        """A client secret for the UI's Live tab: the UI is open to whoever reaches it, and so is its tab."""
        minter = self.realtime.client_secrets
        return minter.mint(LIVE_SECRET_TTL_S)[0] if minter is not None else ""

    async def _track(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Count requests in flight; while draining, refuse new work (503) but finish what was accepted."""
        if request.url.path in ("/healthz", "/readyz", "/metrics"):
            return await call_next(request)
        if self.backend.draining:
            error = {
                "message": "the server is shutting down; retry",
                "type": "server_error",
                "code": "draining",
            }
            return JSONResponse({"error": error}, status_code=503, headers={"Retry-After": "5"})
        self.in_flight += 1
        try:
            return await call_next(request)
        finally:
            self.in_flight -= 1

    def drain(self) -> int:
        """Stop taking new requests (readiness fails, new requests get 503); returns requests in flight.
        Job workers stop: a running job's lease runs out and another replica (or the next start) takes it."""
        self.backend.draining = True
        if self.jobs is not None:
            self.jobs.stop()
        return self.in_flight

    def requests_in_flight(self) -> int:
        return self.in_flight

    def __del__(self) -> None:
        """Serve's graceful stop of this replica (also without a drain, as `serve.shutdown()` does it):
        the job workers stop before the replica's thread pool goes, so their loop does not spin on a
        closed pool; a running job's lease runs out and the next worker takes it over."""
        if getattr(self, "jobs", None) is not None:
            self.jobs.stop()

    async def _metrics(self) -> str:
        """Prometheus text: first the model replica this scrape reached (exact, up to date: batch sizes,
        windows, packing) and this ingress replica's gauges, then every replica's `tw_model_*` and
        `tw_request_*` series as Ray exported them a few seconds ago (`cluster_metrics`)."""
        import anyio.to_thread

        from tuned_whisper.serving.cluster_metrics import cluster_metrics

        stats = await self.model.stats.remote()
        lines = ["# TYPE tw_batches counter"]
        lines += [
            f'tw_batches{{size="{size}"}} {count}' for size, count in sorted(stats["batch_sizes"].items())
        ]
        lines += ["# TYPE tw_audio_seconds counter", f"tw_audio_seconds {stats['audio_seconds']:.3f}"]
        lines += ["# TYPE tw_windows_decoded counter", f"tw_windows_decoded {stats['windows']}"]
        lines += ["# TYPE tw_packed_clips counter", f"tw_packed_clips {stats['packed_clips']}"]
        lines += ["# TYPE tw_realtime_sessions gauge", f"tw_realtime_sessions {self.realtime.registry.open}"]
        lines += ["# TYPE tw_requests_in_flight gauge", f"tw_requests_in_flight {self.in_flight}"]
        lines += ["# TYPE tw_window_retries counter", f"tw_window_retries {self.backend.runner.retried}"]
        return "\n".join(lines) + "\n" + await anyio.to_thread.run_sync(cluster_metrics)
