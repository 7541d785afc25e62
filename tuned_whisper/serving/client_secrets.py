"""Who may call, and who they are: the API keys (over HTTP and the WebSocket alike) and short-lived keys
for browsers, as OpenAI's realtime client secrets: a web page must not hold the API key, so the server
hands it a signed key (`ek_…`) that opens realtime sessions until it expires.

The signature is keyed by the configured API key, so every ingress replica checks the keys the others
minted without sharing state. No API key configured: the endpoints are open and no secret is needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

PREFIX = "ek_"
DEFAULT_TTL_S = 600
MIN_TTL_S, MAX_TTL_S = 10, 7200  # OpenAI's bounds for `expires_after.seconds`


def is_api_key(token: str, keys: Sequence[bytes]) -> bool:
    """Whether `token` is one of the configured keys (each compared in constant time)."""
    return sum(secrets.compare_digest(token.encode(), key) for key in keys) > 0


def key_caller(token: str) -> str:
    """The caller id of an API key, the same over HTTP and the WebSocket (packing is scoped by it)."""
    return "key-" + hashlib.sha256(f"Bearer {token}".encode()).hexdigest()[:16]


def presented_key(authorization: str) -> str | None:
    """The key in an `Authorization` header: `Bearer <key>`, or `Basic` with the key as the password."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def caller_of(authorization: str) -> str | None:
    """The caller id of the key an `Authorization` header presents, if it presents one."""
    key = presented_key(authorization)
    return key_caller(key) if key else None


@dataclass(frozen=True)
class ClientSecrets:
    """Mints and checks `ek_<expires>_<nonce>_<signature>` keys."""

    signing_key: bytes

    @classmethod
    def from_keys(cls, keys: Sequence[bytes]) -> ClientSecrets | None:
        """Keyed by the first API key; None when the service has no keys (nothing to protect)."""
        if not keys:
            return None
        return cls(hashlib.sha256(b"tuned-whisper client secret\0" + keys[0]).digest())

    def mint(self, ttl_s: int = DEFAULT_TTL_S, *, now: float | None = None) -> tuple[str, int]:
        """A new key and the Unix time it expires at."""
        ttl_s = min(max(int(ttl_s), MIN_TTL_S), MAX_TTL_S)
        expires_at = int(time.time() if now is None else now) + ttl_s
        body = f"{expires_at}_{secrets.token_hex(8)}"
        return f"{PREFIX}{body}_{self._sign(body)}", expires_at

    def caller(self, value: str, *, now: float | None = None) -> str | None:
        """The caller id of a valid, unexpired key (each key its own caller); None otherwise."""
        if not value.startswith(PREFIX):
            return None
        body, _, signature = value[len(PREFIX) :].rpartition("_")
        expires, _, nonce = body.partition("_")
        if not (expires.isdigit() and nonce and hmac.compare_digest(signature, self._sign(body))):
            return None
        if int(expires) < (time.time() if now is None else now):
            return None
        return f"ek-{nonce}"

    def _sign(self, body: str) -> str:
        return hmac.new(self.signing_key, body.encode(), hashlib.sha256).hexdigest()[:32]
