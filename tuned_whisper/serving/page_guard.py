"""The API key in front of everything that is not `/v1`: the UI, its Gradio API and the docs.

`/v1` checks the key itself (OpenAI's error shape); here the rest of the app asks for it too when keys are
on. A browser cannot set a header, so the key also comes as HTTP Basic credentials (any user name, the key
as password): a 401 with `WWW-Authenticate: Basic` makes the browser ask for it once and send it with
every request of the page after that. Probes (`/healthz`, `/readyz`) and `/metrics` stay open.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tuned_whisper.config import ApiSettings
from tuned_whisper.serving.client_secrets import is_api_key, presented_key

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REALM = 'Basic realm="tuned-whisper", charset="UTF-8"'
REFUSAL = (
    "This tuned-whisper server asks for its API key. In a browser, sign in with any user name and the API "
    "key as the password; from code, send 'Authorization: Bearer <key>'.\n"
)


def guarded_path(path: str) -> bool:
    """Whether this middleware checks the key for `path` (`/v1` checks its own)."""
    return not (path == "/v1" or path.startswith("/v1/") or path in OPEN_PATHS)


class PageGuard:
    """ASGI middleware: a request (or WebSocket) to a guarded path without a valid key gets a 401."""

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not guarded_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        token = presented_key(headers.get(b"authorization", b"").decode("latin-1"))
        if token is not None and is_api_key(token, self.settings.keys()):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "missing or incorrect API key"})
            return
        refusal = PlainTextResponse(REFUSAL, status_code=401, headers={"WWW-Authenticate": REALM})
        await refusal(scope, receive, send)
