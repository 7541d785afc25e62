"""OpenAI-shaped errors: every failure leaves as `{"error": {"message", "type", "param", "code"}}`.

`ApiError` is what the API code raises; `install_error_handlers(app)` turns it, FastAPI's validation
errors (which would otherwise be 422s in FastAPI's own shape), Starlette's HTTP errors (404, 405) and
unexpected exceptions into that shape, each carrying the request's `X-Request-ID`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("tuned_whisper.api")

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is echoed only if it is short and plain, so it cannot forge log lines or headers.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ApiError(Exception):
    """A failure to report to the client with an HTTP status, in OpenAI's error shape."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.code = code
        self.type = type_ or _error_type(status_code)
        self.headers = dict(headers or {})


class ModelUnavailable(ApiError):
    """The model replicas could not decode a window (one died and the retry failed too, or it took too
    long): a 503 the client may retry, never a bare 500."""

    def __init__(self, message: str, *, code: str = "model_unavailable", retry_after_s: int = 5) -> None:
        super().__init__(503, message, code=code, headers={"Retry-After": str(retry_after_s)})


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """What every error answer holds (OpenAI's shape)."""

    error: ErrorDetail


_ERROR_STATUSES = {
    400: "the request is malformed or its audio cannot be decoded",
    401: "no API key, or a wrong one",
    404: "no such model, job or route",
    405: "the route does not take this method",
    409: "the job is not in a state that allows this",
    413: "the upload is over the size limit",
    429: "over a limit on audio or requests in flight; retry after Retry-After seconds",
    503: "draining, or no model replica could decode in time; retry after Retry-After seconds",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in _ERROR_STATUSES.items()
}
"""The error answers of every `/v1` route, for its OpenAPI document."""


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 `invalid_request_error`: the request itself must change."""
    return ApiError(400, message, param=param, code=code)


def _error_type(status_code: int) -> str:
    # OpenAI reports every client error, 401 and 404 included, as an invalid_request_error.
    return "server_error" if status_code >= 500 else "invalid_request_error"


def request_id(request: Request) -> str:
    """This request's id, set once per request: Serve's where the API runs in Serve (the proxy's, from
    `X-Request-ID` or fresh, the one on every log line the request causes); else from `X-Request-ID`, or
    a fresh uuid4 hex."""
    existing = getattr(request.state, "request_id", None)
    if existing is not None:
        return str(existing)
    given = _serve_request_id() or request.headers.get(REQUEST_ID_HEADER, "")
    rid = given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
    request.state.request_id = rid
    return rid


def request_id_header(rid: str) -> dict[str, str]:
    """The response header that echoes the request id; none in Serve, whose proxy adds its own (the same
    id) to every response."""
    return {} if _serve_request_id() else {REQUEST_ID_HEADER: rid}


def _serve_request_id() -> str:
    """The request id of the Serve request being handled, or "" outside Serve."""
    import sys

    if "ray.serve" not in sys.modules:  # a plain FastAPI app (tests, `create_app`)
        return ""
    from ray.serve.context import _get_serve_request_context

    return str(_get_serve_request_context().request_id or "")


def error_response(request: Request, error: ApiError) -> JSONResponse:
    """The JSON response for `error`, with the request id echoed."""
    rid = request_id(request)
    body = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    headers = {**error.headers, **request_id_header(rid)}
    return JSONResponse(body, status_code=error.status_code, headers=headers)


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    log.warning(
        "request_id=%s %s %s -> %d %s: %s",
        request_id(request),
        request.method,
        request.url.path,
        exc.status_code,
        exc.code or exc.type,
        exc.message,
    )
    return error_response(request, exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 becomes a 400 naming the first offending parameter, as OpenAI reports it."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors()) or [{"loc": (), "msg": "invalid request"}]
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = ".".join(location) or None
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    return await _on_api_error(request, bad_request(message, param=param, code="invalid_value"))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    error = ApiError(exc.status_code, str(exc.detail), code=code, headers=exc.headers)
    return await _on_api_error(request, error)


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request_id=%s %s %s failed", request_id(request), request.method, request.url.path)
    message = f"the server failed to handle this request (request id {request_id(request)}); see its logs"
    return error_response(request, ApiError(500, message))


def install_error_handlers(app: FastAPI) -> None:
    """Make every error `app` returns OpenAI-shaped: API errors, validation (400, not 422), 404/405, 500."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
