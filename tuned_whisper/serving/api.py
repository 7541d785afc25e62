"""The OpenAI-compatible HTTP API as a router factory, independent of how the model is run.

`create_api_router(backend, settings)` gives the `/audio/transcriptions`, `/audio/translations` and
`/models` routes for any `TranscribeBackend`; `create_app` mounts it under `/v1` beside `/healthz` and
`/readyz` as a plain FastAPI app. A Ray Serve ingress mounts the same router and calls
`install_error_handlers` on its own app.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tuned_whisper import __version__
from tuned_whisper.adapters import BASE_ALIASES, AdapterRegistry, adapter_card
from tuned_whisper.audio import AudioDecodeError, PcmFile, Samples, audio_duration, decode_audio_to_disk
from tuned_whisper.checkpoint import read_provenance
from tuned_whisper.config import ApiSettings
from tuned_whisper.engine.base import ModelInfo, ProgressCallback, Transcriber
from tuned_whisper.engine.longform import TextDelta
from tuned_whisper.serving.admission import Admission, AudioBudget
from tuned_whisper.serving.client_secrets import (
    DEFAULT_TTL_S,
    MAX_TTL_S,
    MIN_TTL_S,
    ClientSecrets,
    caller_of,
    is_api_key,
)
from tuned_whisper.serving.errors import (
    ERROR_RESPONSES,
    ApiError,
    install_error_handlers,
    request_id,
    request_id_header,
)
from tuned_whisper.serving.jobs_api import JobsApi, add_jobs_routes
from tuned_whisper.serving.upload import (
    TranscriptionUpload,
    openapi_form,
    parse_upload,
    read_form,
    transcript_response,
)
from tuned_whisper.types import Task, TranscribeOptions, Transcript

log = logging.getLogger("tuned_whisper.api")


class TranscribeBackend(Protocol):
    """What the API needs from whatever runs the model (in-process engine, Ray deployment handle, fake).

    A backend may also define `ready() -> bool`; `/readyz` answers 503 while it returns False.
    """

    async def transcribe(
        self,
        audio: Samples,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        *,
        caller: str = "",
        partial: bool = False,
    ) -> Transcript:
        """`caller` names who sent the audio (an API key's digest): only one caller's clips share a window;
        `partial` marks best-effort work (a live turn's partial text) that may wait for other requests."""
        ...

    def model_card(self) -> dict[str, Any]:
        """OpenAI model object fields: `id`, `created` (unix seconds), `owned_by`, plus `provenance`."""
        ...


class EngineBackend:
    """A synchronous `Transcriber` run in worker threads, one call at a time (the model is not re-entrant)."""

    def __init__(self, transcriber: Transcriber, *, lock: threading.Lock | None = None) -> None:
        self.transcriber = transcriber
        self.lock = lock or threading.Lock()
        self._card: dict[str, Any] | None = None

    async def transcribe(
        self,
        audio: Samples,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        *,
        caller: str = "",
        partial: bool = False,
    ) -> Transcript:
        """Transcribe off the event loop; a threading lock (not an asyncio one) works from any loop."""
        return await anyio.to_thread.run_sync(self._transcribe_locked, audio, options, progress)

    def _transcribe_locked(
        self, audio: Samples, options: TranscribeOptions, progress: ProgressCallback | None
    ) -> Transcript:
        with self.lock:
            return self.transcriber.transcribe(audio, options, progress)

    def ready(self) -> bool:
        return True  # the engine is loaded before the backend exists

    def model_card(self) -> dict[str, Any]:
        """The checkpoint's card, read once: its directory name as id, its provenance.json."""
        if self._card is None:
            self._card = self._read_card()
        return dict(self._card)

    def _read_card(self) -> dict[str, Any]:
        return checkpoint_card(self.transcriber.info)


def checkpoint_card(info: ModelInfo) -> dict[str, Any]:
    """The OpenAI model object for a checkpoint: its directory name as id, its provenance.json."""
    path = Path(info.checkpoint)
    provenance = read_provenance(path) if path.is_dir() else None
    created = path.stat().st_mtime if path.exists() else 0
    if provenance is not None:
        created = datetime.fromisoformat(provenance.created_at).timestamp()
    return {
        "id": path.name or info.checkpoint,
        "object": "model",
        "created": int(created),
        "owned_by": "tuned-whisper",
        "provenance": provenance.to_dict() if provenance is not None else None,
        "device": info.device,
        "backend": info.backend,
        "dtype": info.dtype,
        "multilingual": info.is_multilingual,
        "adapter": adapter_card(Path(info.adapter)) if info.adapter else None,
    }


class _RequestIdRoute(APIRoute):
    """Gives each request an id (`X-Request-ID`, echoed on the response) before anything else runs."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def with_request_id(request: Request) -> Response:
            rid = request_id(request)
            response = await handler(request)
            response.headers.update(request_id_header(rid))
            return response

        return with_request_id


def _api_key_check(settings: ApiSettings) -> Callable[..., Awaitable[None]]:
    bearer = HTTPBearer(auto_error=False, description="the server's API key")

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if credentials is None:
            message = "missing API key: send it as 'Authorization: Bearer <key>'"
        elif is_api_key(credentials.credentials, settings.keys()):
            return
        else:
            message = "incorrect API key provided"
        raise ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    return check


async def _client_secret(request: Request, settings: ApiSettings) -> dict[str, Any]:
    ttl = DEFAULT_TTL_S
    if await request.body():
        try:
            body = await request.json()
            seconds = (body.get("expires_after") or {}).get("seconds", DEFAULT_TTL_S)
        except (ValueError, AttributeError) as exc:
            raise ApiError(400, "the body must be JSON such as {'expires_after': {'seconds': 600}}") from exc
        if not isinstance(seconds, int) or not MIN_TTL_S <= seconds <= MAX_TTL_S:
            message = f"expires_after.seconds must be a whole number from {MIN_TTL_S} to {MAX_TTL_S}"
            raise ApiError(400, message, param="expires_after.seconds")
        ttl = seconds
    minter = ClientSecrets.from_keys(settings.keys())
    # An open server checks no key, so any value (here "") opens a session.
    value, expires_at = minter.mint(ttl) if minter is not None else ("", int(time.time()) + ttl)
    return {"value": value, "expires_at": expires_at, "session": {"type": "transcription"}}


def client_id(request: Request, settings: ApiSettings) -> str:
    """Who is asking, for per-client limits: the API key's digest when keys are on, else the peer address
    (behind a proxy that is the proxy's: set keys there)."""
    caller = caller_of(request.headers.get("authorization", "")) if settings.guarded else None
    return caller or f"peer-{request.client.host if request.client else 'unknown'}"


def caller_id(request: Request, settings: ApiSettings) -> str:
    """Who is asking: a digest of the API key when keys are on, else this request alone."""
    caller = caller_of(request.headers.get("authorization", "")) if settings.guarded else None
    return caller or f"request-{request_id(request)}"


async def _decode(upload: TranscriptionUpload, max_audio_s: float, budget: AudioBudget) -> PcmFile:
    """The upload decoded to disk (`PcmFile`): the request holds the windows it decodes, not the recording."""
    decode = functools.partial(
        decode_audio_to_disk, upload.data, name=upload.filename, max_duration_s=max_audio_s
    )
    try:
        return await budget.decode(decode)
    except AudioDecodeError as exc:
        raise ApiError(400, str(exc), param="file", code=exc.reason) from exc


async def _handle_audio(
    request: Request,
    backend: TranscribeBackend,
    settings: ApiSettings,
    task: Task,
    models: Models,
    limits: Admission,
) -> Response:
    """One transcription request; what it holds (its client's slot, its decoded audio) is let go when
    its answer has gone out, a stream's included."""
    held = contextlib.AsyncExitStack()
    await held.enter_async_context(limits.clients.slot(client_id(request, settings)))  # 429 at once
    streaming = False
    try:
        form = await read_form(request, settings.max_upload_bytes)
        try:
            upload = await parse_upload(form, task)
        finally:
            await form.close()
        adapter = await anyio.to_thread.run_sync(models.adapter_for, upload.model)
        upload = dataclasses.replace(upload, options=dataclasses.replace(upload.options, adapter=adapter))
        audio = await _decode(upload, settings.max_audio_s, limits.audio)
        held.callback(audio.close)
        await held.enter_async_context(limits.audio.hold(audio))  # a 429 here, before any stream begins
        caller = caller_id(request, settings)
        if upload.stream:
            events = _released_after(
                _events(backend, audio, upload.options, caller, request_id(request)), held
            )
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            streaming = True
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        started = time.perf_counter()
        transcript = await backend.transcribe(audio, upload.options, caller=caller)
    finally:
        if not streaming:
            await held.aclose()
    log.info(
        "request_id=%s %s file=%r bytes=%d audio_s=%.1f format=%s language=%s took_s=%.2f",
        request_id(request),
        task,
        upload.filename,
        len(upload.data),
        audio_duration(audio),
        upload.response_format,
        transcript.language,
        time.perf_counter() - started,
    )
    return transcript_response(transcript, upload.response_format)


async def _released_after(
    events: AsyncIterator[bytes], held: contextlib.AsyncExitStack
) -> AsyncIterator[bytes]:
    async with held:
        async for event in events:
            yield event


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


async def _pieces(
    backend: TranscribeBackend, audio: Samples, options: TranscribeOptions, caller: str
) -> AsyncIterator[TextDelta | Transcript]:
    stream = getattr(backend, "stream", None)
    if stream is None:  # a backend that only does whole files: one delta, then done
        transcript = await backend.transcribe(audio, options, caller=caller)
        if transcript.text:
            yield TextDelta(transcript.text)
        yield transcript
        return
    async for item in stream(audio, options, caller=caller):
        yield item


async def _events(
    backend: TranscribeBackend, audio: Samples, options: TranscribeOptions, caller: str, rid: str
) -> AsyncIterator[bytes]:
    """OpenAI's transcription stream: `transcript.text.delta` events in order, then one `...done`; an
    error once the stream has begun is an `error` event (the status line has already gone out)."""
    parts: list[str] = []
    try:
        async for item in _pieces(backend, audio, options, caller):
            if isinstance(item, TextDelta):
                parts.append(item.text)
                yield _sse({"type": "transcript.text.delta", "delta": item.text})
            else:
                usage = {"type": "duration", "seconds": round(item.duration, 3)}
                yield _sse({"type": "transcript.text.done", "text": "".join(parts), "usage": usage})
    except Exception:
        log.exception("request_id=%s stream failed", rid)
        error = {"message": "transcription failed while streaming; retry", "type": "server_error"}
        yield _sse({"type": "error", "error": {**error, "code": "stream_failed"}})


def _model_object(backend: TranscribeBackend, settings: ApiSettings) -> dict[str, Any]:
    card = {"object": "model", "created": 0, "owned_by": "tuned-whisper", **backend.model_card()}
    card["id"] = settings.model_id or card.get("id") or "whisper"
    return card


class Models:
    """What a request's `model` may name: the base checkpoint (its id, `whisper-1`, or nothing) or an
    adapter of the registry (by name)."""

    def __init__(self, backend: TranscribeBackend, settings: ApiSettings, registry: AdapterRegistry | None):
        self.backend = backend
        self.settings = settings
        self.registry = registry

    def base(self) -> dict[str, Any]:
        return _model_object(self.backend, self.settings)

    def listing(self) -> list[dict[str, Any]]:
        base = self.base()
        adapters = self.registry.adapters() if self.registry is not None else {}
        return [base, *(self._adapter_object(name, base["id"]) for name in sorted(adapters))]

    def get(self, model_id: str) -> dict[str, Any]:
        base = self.base()
        if model_id == base["id"] or model_id in BASE_ALIASES:
            return base
        return self._adapter_object(model_id, base["id"])  # 404 when the registry has no such adapter

    def names(self) -> list[str]:
        """The base model's id, then every adapter of the registry (what a UI offers)."""
        adapters = self.registry.adapters() if self.registry is not None else {}
        return [self.base()["id"], *sorted(adapters)]

    def adapter_for(self, model: str | None) -> str | None:
        """The adapter a request's `model` names; None for the base model; 404 for anything else."""
        if model is None or model in BASE_ALIASES:
            return None
        base_id = self.base()["id"]
        if model == base_id:
            return None
        if self.registry is None or self.registry.get(model) is None:
            raise self._unknown(model, base_id)
        return model

    def _adapter_object(self, name: str, base_id: str) -> dict[str, Any]:
        adapter = self.registry.get(name) if self.registry is not None else None
        if adapter is None:
            raise self._unknown(name, base_id)
        card = adapter_card(adapter.path)
        return {
            "id": name,
            "object": "model",
            "created": int(adapter.path.stat().st_mtime),
            "owned_by": "tuned-whisper",
            "parent": base_id,
            "adapter": card,
        }

    def _unknown(self, model_id: str, base_id: str) -> ApiError:
        names = [base_id, *(sorted(self.registry.adapters()) if self.registry is not None else [])]
        message = f"model {model_id!r} does not exist; this server serves {', '.join(map(repr, names))}"
        return ApiError(404, message, param="model", code="model_not_found")


def create_api_router(
    backend: TranscribeBackend,
    settings: ApiSettings,
    jobs: JobsApi | None = None,
    registry: AdapterRegistry | None = None,
    limits: Admission | None = None,
    models: Models | None = None,
) -> APIRouter:
    """The OpenAI audio and models routes (and with `jobs` the job routes), to be mounted under `/v1`;
    errors need `install_error_handlers`."""
    guard = [Depends(_api_key_check(settings))] if settings.guarded else []
    router = APIRouter(route_class=_RequestIdRoute, dependencies=guard, responses=ERROR_RESPONSES)
    models = models or Models(backend, settings, registry)
    limits = limits or Admission.from_settings(settings)

    async def transcriptions(request: Request) -> Response:
        """Transcribe an uploaded recording in its own language (OpenAI `audio.transcriptions`)."""
        return await _handle_audio(request, backend, settings, "transcribe", models, limits)

    async def translations(request: Request) -> Response:
        """Translate an uploaded recording into English text (OpenAI `audio.translations`)."""
        return await _handle_audio(request, backend, settings, "translate", models, limits)

    async def list_models() -> dict[str, Any]:
        """The base model and every adapter of the registry, in OpenAI's list shape."""
        return {"object": "list", "data": await anyio.to_thread.run_sync(models.listing)}

    async def get_model(model_id: str) -> dict[str, Any]:
        """The base model or a registry adapter, else 404 `model_not_found`."""
        return await anyio.to_thread.run_sync(models.get, model_id)

    async def client_secrets(request: Request) -> dict[str, Any]:
        """A short-lived key a browser may open realtime sessions with (OpenAI `realtime.client_secrets`);
        `expires_after.seconds` sets its life (10 s to 2 h, 10 min by default)."""
        return await _client_secret(request, settings)

    post = functools.partial(router.add_api_route, methods=["POST"], response_model=None)
    post("/realtime/client_secrets", client_secrets)
    post("/audio/transcriptions", transcriptions, openapi_extra=openapi_form("transcribe"))
    post("/audio/translations", translations, openapi_extra=openapi_form("translate"))
    router.add_api_route("/models", list_models, methods=["GET"])
    router.add_api_route("/models/{model_id:path}", get_model, methods=["GET"])
    if settings.model_uploads and settings.guarded and models.registry is not None:
        from tuned_whisper.serving.models_api import add_model_routes

        add_model_routes(router, settings, models.registry, models.get)
    if jobs is not None:
        add_jobs_routes(router, jobs, models.adapter_for)
    return router


async def _is_ready(backend: TranscribeBackend) -> bool:
    """The backend's optional `ready()`, sync or async; a backend without one is ready."""
    ready = getattr(backend, "ready", None)
    if not callable(ready):
        return True
    result = ready()
    return bool(await result if inspect.isawaitable(result) else result)


def create_app(
    backend: TranscribeBackend,
    settings: ApiSettings | None = None,
    jobs: JobsApi | None = None,
    registry: AdapterRegistry | None = None,
) -> FastAPI:
    """A FastAPI app serving the API under `/v1`, plus `/healthz` (alive) and `/readyz` (model loaded)."""
    settings = settings or ApiSettings()
    app = FastAPI(title="tuned-whisper", version=__version__, summary="OpenAI-compatible speech to text")
    install_error_handlers(app)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
            expose_headers=["X-Request-Id", "Retry-After"],
        )
    if settings.guarded:  # the UI, its Gradio API and the docs ask for the key too
        from tuned_whisper.serving.page_guard import PageGuard

        app.add_middleware(PageGuard, settings=settings)
    limits = Admission.from_settings(settings)
    models = Models(backend, settings, registry)
    app.state.audio_budget = limits.audio  # both shared with the UI (`mount_ui`)
    app.state.models = models
    app.include_router(create_api_router(backend, settings, jobs, registry, limits, models), prefix="/v1")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=None)
    async def readyz() -> dict[str, str] | JSONResponse:
        if not await _is_ready(backend):
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready"}

    return app
