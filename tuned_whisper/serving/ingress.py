"""`GradioServer`: the Serve ingress. FastAPI with the API under `/v1`, the Gradio UI at `/`, health checks.

It decodes uploads with ffmpeg, cuts them into 30 s windows and sends the windows to the `WhisperASR`
replicas, which batch windows across requests (`RayBackend`); it then merges each request's windows
(tokenizer only). Job routes write to the job store; the `JobRunner` deployment runs the jobs.
The FastAPI and Gradio apps are built on the replica (`__serve_build_asgi_app__`): a Gradio app cannot be
pickled, and Ray's own `GradioServer` integration does not work with Gradio 6.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from tuned_whisper.config import Settings
from tuned_whisper.serving.api import create_app
from tuned_whisper.serving.ray_backend import RayBackend
from tuned_whisper.serving.realtime import RealtimeEndpoint, add_realtime_route

logger = logging.getLogger("tuned_whisper.ingress")
LIVE_SECRET_TTL_S = 60  # the UI page connects right after asking; the session then lives on


class JobsOnIngress:
    """The job store and the job routes over it; the jobs themselves run on the `JobRunner` deployment."""

    def __init__(self, settings: Settings) -> None:
        from tuned_whisper.jobs import open_configured_store
        from tuned_whisper.serving.jobs_api import JobsApi

        self.store = open_configured_store(settings.jobs)
        self.api = JobsApi(self.store, settings.jobs, settings.api)


@serve.ingress()
class GradioServer:
    """The ingress deployment; `model` is the bound `WhisperASR` deployment, `job_runner` the `JobRunner`
    one (bound here so that Serve deploys it with the app; the two only share the job store)."""

    def __init__(
        self, model: DeploymentHandle, settings: dict[str, Any], job_runner: DeploymentHandle | None = None
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self.settings = Settings.model_validate(settings)
        self.model = model
        self.backend = RayBackend(model, self.settings)
        self.realtime = RealtimeEndpoint(self.backend, self.settings.api, self.settings.realtime)
        self.in_flight = 0
        self.job_runner = job_runner
        self.jobs = JobsOnIngress(self.settings) if self.settings.jobs.enabled else None

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
        """Stop taking new requests (readiness fails, new requests get 503); returns requests in flight."""
        self.backend.draining = True
        return self.in_flight

    def requests_in_flight(self) -> int:
        return self.in_flight

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
