"""Asynchronous transcription jobs over HTTP: submit a file, get `202` and an id at once, poll, fetch the
result in any response format, list, cancel. The work itself is `tuned_whisper.jobs.worker`'s.

Routes (under `/v1`, behind the same API key as the rest): `POST /audio/transcriptions/jobs` and
`/audio/translations/jobs` take the synchronous endpoints' form fields plus `callback_url`;
`GET .../jobs`, `GET .../jobs/{id}`, `GET .../jobs/{id}/result?response_format=...`, `DELETE .../jobs/{id}`.
With API keys on, a key sees only its own jobs.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData

from tuned_whisper.config import ApiSettings, JobsSettings
from tuned_whisper.jobs.results import load_transcript
from tuned_whisper.jobs.store import Job, JobKind, JobStatus, JobStore, job_object, new_job_id
from tuned_whisper.serving.client_secrets import caller_of
from tuned_whisper.serving.errors import ApiError, bad_request
from tuned_whisper.serving.upload import (
    openapi_form,
    parse_fields,
    read_form,
    response_format,
    transcript_response,
    upload_file,
)
from tuned_whisper.types import Task

KINDS: dict[str, tuple[JobKind, Task]] = {
    "transcriptions": ("transcription", "transcribe"),
    "translations": ("translation", "translate"),
}
MAX_PAGE = 100


MAX_CALLBACK_CHARS = 2048


def _callback_url(form: FormData, hosts: Sequence[str]) -> str | None:
    """The form's `callback_url`: http(s), and when `hosts` is set on one of them (`.example.com` also
    allows its subdomains), so that a caller cannot make the service post to wherever it likes."""
    value = form.get("callback_url")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    url = str(value).strip()
    if len(url) > MAX_CALLBACK_CHARS:
        raise bad_request(
            f"callback_url is longer than {MAX_CALLBACK_CHARS} characters", param="callback_url"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request(f"callback_url must be an http(s) URL, got {url!r}", param="callback_url")
    host = parts.hostname.lower()
    allowed = [h.lower() for h in hosts]
    if allowed and not any(host == h or (h.startswith(".") and host.endswith(h)) for h in allowed):
        raise bad_request(
            f"callback_url host {host!r} is not one this server posts to (TW_JOBS__CALLBACK_HOSTS)",
            param="callback_url",
            code="callback_host_not_allowed",
        )
    return url


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, f"no job {job_id!r}", param="job_id", code="job_not_found")


class JobsApi:
    """The routes' logic over one store; `caller` scoping follows the API key."""

    def __init__(self, store: JobStore, jobs: JobsSettings, api: ApiSettings) -> None:
        self.store = store
        self.jobs = jobs
        self.keys_on = api.guarded
        (jobs.data_dir / "audio").mkdir(parents=True, exist_ok=True)

    def caller(self, request: Request) -> str | None:
        """A digest of the request's key when keys are on; without keys everyone sees every job."""
        return caller_of(request.headers.get("authorization", "")) if self.keys_on else None

    async def submit(
        self, request: Request, kind: JobKind, task: Task, adapter_for: AdapterFor
    ) -> JSONResponse:
        form = await read_form(request, self.jobs.max_upload_bytes)
        try:
            model, response_format, options, stream = parse_fields(form, task)
            adapter = adapter_for(model)
            if stream:
                raise bad_request("a job is not streamed; poll it or pass a callback_url", param="stream")
            callback_url = _callback_url(form, self.jobs.callback_hosts)
            upload = upload_file(form)
            job_id = new_job_id()
            audio_path = self.jobs.data_dir / "audio" / job_id
            await anyio.to_thread.run_sync(_copy, upload.file, audio_path)
        finally:
            await form.close()
        params = {
            "model": model,
            "adapter": adapter,
            "response_format": response_format,
            "language": options.language,
            "prompt": options.initial_prompt,
            "temperature": options.temperature,
            "word_timestamps": options.word_timestamps,
            "filename": upload.filename or "upload",
        }
        create = functools.partial(
            self.store.create,
            kind,
            params,
            str(audio_path),
            caller=self.caller(request),
            callback_url=callback_url,
            max_attempts=self.jobs.max_attempts,
            job_id=job_id,
        )
        job = await anyio.to_thread.run_sync(create)
        return JSONResponse(job_object(job), status_code=202)

    async def job(self, request: Request, job_id: str) -> Job:
        job = await anyio.to_thread.run_sync(self.store.get, job_id)
        caller = self.caller(request)
        if job is None or (caller is not None and job.caller != caller):
            raise _not_found(job_id)
        return job

    async def get(self, request: Request, job_id: str) -> dict[str, Any]:
        return job_object(await self.job(request, job_id))

    async def result(self, request: Request, job_id: str) -> Response:
        job = await self.job(request, job_id)
        fmt = response_format(
            request.query_params.get("response_format") or job.params.get("response_format")
        )
        if job.status != "succeeded" or job.result_path is None:
            detail = f": {job.error['message']}" if job.error else ""
            message = f"job {job_id} is {job.status}{detail}; its result exists once it has succeeded"
            raise ApiError(409, message, param="job_id", code=f"job_{job.status}")
        transcript = await anyio.to_thread.run_sync(load_transcript, Path(job.result_path))
        return transcript_response(transcript, fmt)

    async def list(self, request: Request, kind: JobKind) -> dict[str, Any]:
        query = request.query_params
        status = query.get("status")
        if status is not None and status not in get_args(JobStatus):
            raise bad_request(f"unknown status {status!r}", param="status")
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE:
            raise bad_request(f"limit must be a whole number from 1 to {MAX_PAGE}", param="limit")
        page = functools.partial(
            self.store.list,
            status=status,
            caller=self.caller(request),
            kind=kind,
            limit=limit,
            after=query.get("after"),
        )
        try:
            jobs, has_more = await anyio.to_thread.run_sync(page)
        except ValueError as exc:
            raise bad_request(str(exc), param="after") from exc
        data = [job_object(j) for j in jobs]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more}

    async def cancel(self, request: Request, job_id: str) -> dict[str, Any]:
        await self.job(request, job_id)
        job = await anyio.to_thread.run_sync(
            functools.partial(self.store.cancel, job_id, caller=self.caller(request))
        )
        if job is None:
            raise _not_found(job_id)
        if job.status != "cancelled":
            message = f"job {job_id} has already {job.status}; only queued or running jobs can be cancelled"
            raise ApiError(409, message, param="job_id", code="job_finished")
        return job_object(job)


def _copy(source: Any, target: Path) -> None:
    """The spooled upload to its place under the data directory, in chunks (never whole in memory)."""
    source.seek(0)
    partial = target.with_suffix(".part")
    with partial.open("wb") as out:
        shutil.copyfileobj(source, out, 1024 * 1024)
    partial.replace(target)


AdapterFor = Callable[[str | None], str | None]
"""A request's `model` -> the adapter to decode with (None: the base), or the 404 `model_not_found`."""


def add_jobs_routes(router: APIRouter, api: JobsApi, adapter_for: AdapterFor) -> None:
    """Mount the job routes on the `/v1` router (whose dependencies check the API key)."""
    for plural, (kind, task) in KINDS.items():
        base = f"/audio/{plural}/jobs"
        submit = _submit(api, kind, task, adapter_for)
        form = openapi_form(task, extra={"callback_url": {"type": "string", "format": "uri"}})
        router.add_api_route(
            base, submit, methods=["POST"], response_model=None, status_code=202, openapi_extra=form
        )
        router.add_api_route(base, _listing(api, kind), methods=["GET"])
        router.add_api_route(base + "/{job_id}", api.get, methods=["GET"])
        router.add_api_route(base + "/{job_id}/result", api.result, methods=["GET"], response_model=None)
        router.add_api_route(base + "/{job_id}", api.cancel, methods=["DELETE"])


def _submit(api: JobsApi, kind: JobKind, task: Task, adapter_for: AdapterFor) -> Any:
    async def submit(request: Request) -> JSONResponse:
        """Queue a recording; answers 202 with the job at once (form fields as the synchronous endpoint's,
        plus `callback_url`)."""
        return await api.submit(request, kind, task, adapter_for)

    return submit


def _listing(api: JobsApi, kind: JobKind) -> Any:
    async def listing(request: Request) -> dict[str, Any]:
        """The caller's jobs, newest first (`status`, `limit`, `after` to page)."""
        return await api.list(request, kind)

    return listing
