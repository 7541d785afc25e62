"""Telling a job's `callback_url` that the job has ended: POST the job object, retried with back-off."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("tuned_whisper.jobs")

ATTEMPTS = 5
FIRST_DELAY_S = 1.0
TIMEOUT_S = 10.0


async def deliver(
    url: str, payload: dict[str, Any], *, attempts: int = ATTEMPTS, delay_s: float = FIRST_DELAY_S
) -> bool:
    """True once the receiver answers 2xx; a 4xx but 408/429 is final; else retried, doubling the wait."""
    import httpx

    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        for attempt in range(1, attempts + 1):
            try:
                response = await client.post(url, json=payload)
            except httpx.HTTPError as exc:
                log.warning("callback %s attempt %d: %s", url, attempt, exc)
            else:
                if response.is_success:
                    return True
                log.warning("callback %s attempt %d: HTTP %d", url, attempt, response.status_code)
                if response.is_client_error and response.status_code not in (408, 429):
                    return False
            if attempt < attempts:
                await asyncio.sleep(delay_s * 2 ** (attempt - 1))
    return False
