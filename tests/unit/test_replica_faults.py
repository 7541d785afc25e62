"""What a request sees when a model replica dies or hangs under its window (fake handles, no Ray cluster).

The real replica kill, through HTTP, is in tests/integration/test_faults.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any

import pytest
from ray.exceptions import ActorDiedError

from tuned_whisper.serving.errors import ModelUnavailable
from tuned_whisper.serving.ray_backend import RayRunner

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Response:
    """A `DeploymentResponse` stand-in: awaiting it runs `outcome`."""

    def __init__(self, outcome: Callable[[], Any]) -> None:
        self.outcome = outcome
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __await__(self) -> Generator[Any, None, Any]:
        return self._run().__await__()

    async def _run(self) -> Any:
        result = self.outcome()
        return await result if asyncio.iscoroutine(result) else result


class Handle:
    """`handle.decode.remote(job)` answering with the next of `outcomes`."""

    def __init__(self, *outcomes: Callable[[], Any]) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[Response] = []
        self.decode = self

    def remote(self, job: object) -> Response:
        response = Response(self.outcomes.pop(0))
        self.sent.append(response)
        return response


def dies() -> None:
    raise ActorDiedError()


async def hangs() -> None:
    await asyncio.sleep(3600)


async def test_a_window_whose_replica_dies_is_sent_once_more_and_its_text_comes_back() -> None:
    model = Handle(dies, lambda: "decoded")
    runner = RayRunner(model, timeout_s=5)  # type: ignore[arg-type]
    assert await runner.decode(object()) == "decoded"  # type: ignore[arg-type]
    assert len(model.sent) == 2 and runner.retried == 1


async def test_a_second_loss_is_a_503_the_client_may_retry() -> None:
    runner = RayRunner(Handle(dies, dies), timeout_s=5)  # type: ignore[arg-type]
    with pytest.raises(ModelUnavailable) as failed:
        await runner.decode(object())  # type: ignore[arg-type]
    assert failed.value.status_code == 503 and failed.value.code == "model_unavailable"
    assert failed.value.headers["Retry-After"].isdigit()


async def test_a_stuck_replica_times_the_window_out_and_the_request_is_cancelled_there() -> None:
    model = Handle(hangs)
    runner = RayRunner(model, timeout_s=0.2)  # type: ignore[arg-type]
    with pytest.raises(ModelUnavailable) as failed:
        await asyncio.wait_for(runner.decode(object()), timeout=5)  # type: ignore[arg-type]
    assert failed.value.code == "model_timeout" and "0.2 s" in failed.value.message
    assert model.sent[0].cancelled


async def test_an_error_in_the_decoder_itself_is_not_retried() -> None:
    def broken() -> None:
        raise ValueError("bad window")

    model = Handle(broken, lambda: "never")
    with pytest.raises(ValueError, match="bad window"):
        await RayRunner(model, timeout_s=5).decode(object())  # type: ignore[arg-type]
    assert len(model.sent) == 1
