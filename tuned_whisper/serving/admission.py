"""How much decoded audio one ingress holds at once: past the cap a request is refused with a 429 and
`Retry-After`, so a burst of long uploads slows callers down instead of exhausting the instance's memory.

Decoded audio is float32 at 16 kHz (64 kB per second, 0.9 GB per 4 h); a request holds its audio from
decoding until its answer has gone out. Decoding itself is a short spike, so only a few run at once.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from tuned_whisper.audio import SAMPLE_RATE, Samples
from tuned_whisper.config import ApiSettings
from tuned_whisper.serving.errors import ApiError

RETRY_AFTER_S = 5


class RateLimited(ApiError):
    """A 429 with `Retry-After`: the request is fine, the server cannot take it now."""

    def __init__(self, message: str, code: str) -> None:
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        super().__init__(429, message, code=code, type_="rate_limit_error", headers=headers)


class ServerBusy(RateLimited):
    """The server holds as much audio as it may."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "audio_in_flight_limit")


_S = TypeVar("_S", bound=Samples)


class AudioBudget:
    """Seconds of decoded audio held by requests in flight, up to `limit_s`; decodes `decode_slots` at a
    time. A request alone is always admitted (its own length is capped by `max_audio_s`)."""

    def __init__(self, limit_s: float, decode_slots: int) -> None:
        self.limit_s = limit_s
        self.held_s = 0.0
        self.refused = 0
        self._slots = anyio.Semaphore(decode_slots)

    async def decode(self, decode: Callable[[], _S]) -> _S:
        """Run `decode` in a thread once a decode slot is free."""
        async with self._slots:
            return await anyio.to_thread.run_sync(decode)

    @contextlib.asynccontextmanager
    async def hold(self, audio: Samples) -> AsyncIterator[None]:
        """Count `audio` as held while the block runs; ServerBusy if it does not fit beside the rest."""
        seconds = len(audio) / SAMPLE_RATE
        if self.held_s > 0 and self.held_s + seconds > self.limit_s:
            self.refused += 1
            message = (
                f"the server is holding {self.held_s:.0f} s of audio for other requests and this one adds "
                f"{seconds:.0f} s (limit {self.limit_s:.0f} s); retry in {RETRY_AFTER_S} s"
            )
            raise ServerBusy(message)
        self.held_s += seconds
        try:
            yield
        finally:
            self.held_s -= seconds


class TooManyRequests(RateLimited):
    """This client already has as many requests in flight as it may."""

    def __init__(self, limit: int) -> None:
        message = f"this client already has {limit} requests in flight; retry in {RETRY_AFTER_S} s"
        super().__init__(message, "too_many_requests_in_flight")


class PerClient:
    """How many requests (or sessions) each client has open, up to `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: Counter[str] = Counter()

    def enter(self, client: str) -> bool:
        """Count one more for `client`; False (nothing counted) when it is at its limit."""
        if self.open[client] >= self.limit:
            return False
        self.open[client] += 1
        return True

    def leave(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]

    @contextlib.asynccontextmanager
    async def slot(self, client: str) -> AsyncIterator[None]:
        """One request's slot for the block; TooManyRequests when `client` has none left."""
        if not self.enter(client):
            raise TooManyRequests(self.limit)
        try:
            yield
        finally:
            self.leave(client)


@dataclass(frozen=True)
class Admission:
    """What one ingress lets in: decoded audio in flight, and requests per client."""

    audio: AudioBudget
    clients: PerClient

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Admission:
        return cls(
            AudioBudget(settings.max_audio_in_flight_s, settings.concurrent_decodes),
            PerClient(settings.max_requests_per_client),
        )
