"""Receiving an upload: the body is counted as it streams in, parsed as multipart, and its fields checked.

The size limit is enforced here, not by FastAPI's `UploadFile`/`Form` parameters, because those read
the whole body before the endpoint runs. `read_form` refuses a `Content-Length` over the limit before
reading a byte, and otherwise feeds Starlette's streaming `MultiPartParser` from a generator that counts
the bytes of `request.stream()` and raises a 413 the moment the count passes the limit, so neither a
lying nor an absent `Content-Length` (chunked uploads) lets more than one chunk past the limit in. Living
in the request handler rather than in ASGI middleware, the limit travels with the router into any app
that mounts it (plain FastAPI here, a Ray Serve ingress later). The limit counts the whole body, so the
multipart framing (a few hundred bytes) counts against it too.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, get_args

from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from tuned_whisper.formats import MEDIA_TYPES, render
from tuned_whisper.languages import language_code
from tuned_whisper.serving.errors import ApiError, bad_request
from tuned_whisper.types import Task, TranscribeOptions, Transcript

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
RESPONSE_FORMATS: tuple[str, ...] = get_args(ResponseFormat)
GRANULARITIES = ("segment", "word")
# OpenAI's SDK sends lists with brackets ("timestamp_granularities[]"); curl users often leave them off.
_GRANULARITY_FIELDS = ("timestamp_granularities[]", "timestamp_granularities")
_MAX_FIELDS = 32


@dataclass(frozen=True)
class TranscriptionUpload:
    """A checked `/audio/transcriptions` or `/audio/translations` request."""

    filename: str
    data: bytes
    model: str | None
    response_format: ResponseFormat
    options: TranscribeOptions
    stream: bool = False
    """Send the text as server-sent events while it is decoded (json and text formats only)."""


def too_large(max_bytes: int) -> ApiError:
    """The 413 for a body over `max_bytes`."""
    return ApiError(
        413,
        f"the upload is larger than this server's limit of {max_bytes:,} bytes; "
        "send a shorter recording or compress it (e.g. to Opus or MP3)",
        param="file",
        code="request_too_large",
    )


def _check_content_length(headers: Headers, max_bytes: int) -> None:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)


async def _limited(request: Request, max_bytes: int) -> AsyncGenerator[bytes, None]:
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise too_large(max_bytes)
            yield chunk
    except ClientDisconnect as exc:
        message = "the client disconnected before the upload finished"
        raise bad_request(message, code="incomplete_upload") from exc


async def read_form(request: Request, max_bytes: int) -> FormData:
    """The request's multipart form, read while counting bytes; 413 as soon as the body passes max_bytes."""
    _check_content_length(request.headers, max_bytes)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise bad_request(
            "send the audio as multipart/form-data with the file in a 'file' field", param="file"
        )
    parser = MultiPartParser(
        request.headers, _limited(request, max_bytes), max_files=1, max_fields=_MAX_FIELDS
    )
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise bad_request(f"malformed multipart/form-data body: {exc}; send one 'file' part") from exc


FIELD_CHARS = {"prompt": 4000}
"""Longest text a form field may hold (Whisper reads at most 224 prompt tokens: far fewer characters)."""
OTHER_FIELD_CHARS = 200


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise bad_request(f"'{name}' must be a plain form field, not a file", param=name)
    if value is None:
        return None
    limit = FIELD_CHARS.get(name, OTHER_FIELD_CHARS)
    if len(value) > limit:
        raise bad_request(
            f"'{name}' is {len(value)} characters long; at most {limit} are accepted", param=name
        )
    return value.strip() or None


def _response_format(form: FormData) -> ResponseFormat:
    return response_format(_text(form, "response_format"))


def response_format(value: str | None) -> ResponseFormat:
    """A checked `response_format` (json when none is given); 400 for one this API does not write."""
    value = value or "json"
    if value not in RESPONSE_FORMATS:
        raise bad_request(
            f"unsupported response_format {value!r}: choose one of {', '.join(RESPONSE_FORMATS)}",
            param="response_format",
        )
    return value  # type: ignore[return-value]


def _temperature(form: FormData) -> float:
    value = _text(form, "temperature")
    if value is None:
        return 0.0
    try:
        temperature = float(value)
    except ValueError:
        temperature = math.nan
    if not 0.0 <= temperature <= 1.0:  # NaN fails this too
        raise bad_request(f"temperature must be a number from 0 to 1, got {value!r}", param="temperature")
    return temperature


def _language(form: FormData) -> str | None:
    value = _text(form, "language")
    if value is None:
        return None
    try:
        return language_code(value)
    except ValueError as exc:
        raise bad_request(str(exc), param="language", code="unsupported_language") from exc


def _word_timestamps(form: FormData, response_format: ResponseFormat) -> bool:
    """True when word timestamps were asked for; like OpenAI, only verbose_json may ask for any."""
    values = [v for field in _GRANULARITY_FIELDS for v in form.getlist(field)]
    granularities = [str(v).strip() for v in values if not isinstance(v, str) or v.strip()]
    unknown = [g for g in granularities if g not in GRANULARITIES]
    if unknown:
        raise bad_request(
            f"unsupported timestamp_granularities {unknown[0]!r}: choose from {', '.join(GRANULARITIES)}",
            param="timestamp_granularities",
        )
    if granularities and response_format != "verbose_json":
        raise bad_request(
            "timestamp_granularities needs response_format=verbose_json",
            param="timestamp_granularities",
        )
    return "word" in granularities


def _stream(form: FormData, response_format: ResponseFormat) -> bool:
    value = (_text(form, "stream") or "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise bad_request(f"stream must be true or false, got {value!r}", param="stream")
    stream = value in ("true", "1")
    if stream and response_format not in ("json", "text"):
        raise bad_request("stream=true works with response_format json or text", param="stream")
    return stream


async def _file(form: FormData) -> tuple[str, bytes]:
    upload = upload_file(form)
    return upload.filename or "upload", await upload.read()


async def parse_upload(form: FormData, task: Task) -> TranscriptionUpload:
    """Check the form's fields for `task`; `language` is read for transcriptions only, as in OpenAI's API.

    `model` is checked by the caller against the models served (`whisper-1` and the base id mean the base
    checkpoint; `GET /v1/models` lists the adapters too).
    """
    filename, data = await _file(form)
    fields = parse_fields(form, task)
    return TranscriptionUpload(filename, data, *fields)


def parse_fields(form: FormData, task: Task) -> tuple[str | None, ResponseFormat, TranscribeOptions, bool]:
    """The form's fields other than the file: (model, response_format, options, stream)."""
    response_format = _response_format(form)
    options = TranscribeOptions(
        language=_language(form) if task == "transcribe" else None,
        task=task,
        initial_prompt=_text(form, "prompt"),
        temperature=_temperature(form),
        word_timestamps=_word_timestamps(form, response_format),
    )
    return _text(form, "model"), response_format, options, _stream(form, response_format)


def upload_file(form: FormData) -> UploadFile:
    """The form's `file` part (spooled to disk by the parser, not read into memory here)."""
    upload = form.get("file")
    if upload is None:
        raise bad_request("no audio: send the recording in a 'file' form field", param="file")
    if not isinstance(upload, UploadFile):
        raise bad_request("'file' must be a file upload (with a filename), not a text field", param="file")
    return upload


def openapi_form(task: Task, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The multipart body for the OpenAPI docs, which cannot see fields the handler parses itself;
    `extra` adds fields (a job's `callback_url`)."""
    properties: dict[str, Any] = {
        "file": {"type": "string", "format": "binary"},
        "model": {
            "type": "string",
            "description": "the base checkpoint's id, whisper-1, or an adapter's name (GET /v1/models)",
        },
        "prompt": {"type": "string"},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1, "default": 0},
        "stream": {
            "type": "boolean",
            "default": False,
            "description": "server-sent events as text is decoded",
        },
        "timestamp_granularities[]": {"type": "array", "items": {"enum": list(GRANULARITIES)}},
    }
    if task == "transcribe":
        properties["language"] = {"type": "string", "description": "ISO 639-1 code or English name"}
    properties.update(extra or {})
    schema = {"type": "object", "required": ["file"], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def transcript_response(transcript: Transcript, fmt: ResponseFormat) -> Response:
    """The transcript written in a response format, with its media type."""
    name = "txt" if fmt == "text" else fmt
    media_type = MEDIA_TYPES[name]
    if not media_type.startswith(("text/", "application/json")):
        media_type += "; charset=utf-8"  # Starlette adds the charset to text/* types only
    return Response(render(transcript, name), media_type=media_type)
