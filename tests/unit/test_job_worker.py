"""A job worker over a real SQLite store and real audio files, with a fake transcription: what happens to
a job from queued to its end (success, a bad file, a failing model, a cancel, a callback)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.clips import JFK
from tuned_whisper.config import JobsSettings
from tuned_whisper.engine.longform import WindowLog
from tuned_whisper.engine.windows import Decoded
from tuned_whisper.jobs import SqliteJobStore
from tuned_whisper.jobs.results import load_transcript
from tuned_whisper.jobs.worker import JobWorker
from tuned_whisper.types import Segment, TranscribeOptions, Transcript


@pytest.fixture
def settings(tmp_path: Path) -> JobsSettings:
    return JobsSettings(data_dir=tmp_path, lease_s=3, poll_s=0.05, max_attempts=2)


@pytest.fixture
def store(settings: JobsSettings) -> Iterator[SqliteJobStore]:
    store = SqliteJobStore(settings.data_dir / "jobs.sqlite3")
    yield store
    store.close()


def submit(store: SqliteJobStore, path: Path, **params: object) -> str:
    return store.create("transcription", {"filename": path.name, **params}, str(path), max_attempts=2).id


class Model:
    """Decodes a recording as four windows the way the long-form path does: windows an earlier attempt
    finished are skipped, each new one is recorded, then progress moves on. Can fail, or hang after a
    number of windows (a replica that died)."""

    def __init__(self, fail: int = 0, hang: bool = False, hang_after: int = 4) -> None:
        self.fail = fail
        self.hang = hang
        self.hang_after = hang_after
        self.calls: list[TranscribeOptions] = []
        self.decoded: list[int] = []
        self.cancelled = False

    async def __call__(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: Callable[[float], None],
        caller: str,
        log: WindowLog,
    ) -> Transcript:
        self.calls.append(options)
        for index in range(4):
            if index == self.hang_after:
                await self._hang()
            if index not in log.known:
                window = Decoded(np.asarray([index], dtype=np.int64), -0.1, 0.0, 0.0, "en")
                self.decoded.append(index)
                assert log.record is not None
                log.record(index, window)
            progress((index + 1) / 4)
            await asyncio.sleep(0.01)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("the model replica died")
        if self.hang:
            await self._hang()
        seconds = len(audio) / 16000
        segment = Segment(id=0, start=0.0, end=seconds, text=f" {seconds:.0f} seconds of speech")
        return Transcript(text=segment.text.strip(), language="en", duration=seconds, segments=(segment,))

    async def _hang(self) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def test_a_queued_job_is_transcribed_and_its_result_kept(
    store: SqliteJobStore, settings: JobsSettings
) -> None:
    job_id = submit(store, JFK.path, language="en", word_timestamps=False)
    model = Model()
    assert asyncio.run(JobWorker(store, model, settings).run_once()) is True
    job = store.get(job_id)
    assert job is not None and job.status == "succeeded" and job.progress == 1.0
    assert job.audio_s == pytest.approx(JFK.duration, abs=0.05) and job.attempts == 1
    assert model.calls[0].language == "en"
    assert load_transcript(Path(job.result_path or "")).text == "11 seconds of speech"
    assert asyncio.run(JobWorker(store, model, settings).run_once()) is False  # nothing left


def test_a_file_that_is_not_audio_fails_its_job_at_once_with_the_reason(
    store: SqliteJobStore, settings: JobsSettings, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not a recording")
    job_id = submit(store, bad)
    asyncio.run(JobWorker(store, Model(), settings).run_once())
    job = store.get(job_id)
    assert job is not None and job.status == "failed" and job.attempts == 1
    assert job.error is not None and "notes.wav" in job.error["message"]


def test_a_failing_model_is_retried_until_the_attempts_run_out(
    store: SqliteJobStore, settings: JobsSettings
) -> None:
    job_id = submit(store, JFK.path)
    model = Model(fail=5)
    worker = JobWorker(store, model, settings)
    asyncio.run(worker.run_once())
    job = store.get(job_id)
    assert job is not None and job.status == "queued" and job.error is not None  # queued again, error kept
    asyncio.run(worker.run_once())
    job = store.get(job_id)
    assert job is not None and job.status == "failed" and job.attempts == 2
    assert job.error is not None and "replica died" in job.error["message"]


def test_a_failure_then_a_success_ends_succeeded(store: SqliteJobStore, settings: JobsSettings) -> None:
    job_id = submit(store, JFK.path)
    worker = JobWorker(store, Model(fail=1), settings)
    asyncio.run(worker.run_once())
    asyncio.run(worker.run_once())
    job = store.get(job_id)
    assert job is not None and job.status == "succeeded" and job.attempts == 2


def test_cancelling_a_running_job_stops_its_transcription(
    store: SqliteJobStore, settings: JobsSettings
) -> None:
    job_id = submit(store, JFK.path)
    model = Model(hang=True)

    async def story() -> None:
        work = asyncio.create_task(JobWorker(store, model, settings).run_once())
        while not model.calls:
            await asyncio.sleep(0.01)
        running = store.get(job_id)
        assert running is not None and running.status == "running"
        store.cancel(job_id)
        await asyncio.wait_for(work, timeout=settings.lease_s * 2)  # the next heartbeat sees it

    asyncio.run(story())
    assert model.cancelled
    job = store.get(job_id)
    assert job is not None and job.status == "cancelled" and job.result_path is None


def test_progress_is_visible_while_a_job_runs(store: SqliteJobStore, settings: JobsSettings) -> None:
    job_id = submit(store, JFK.path)
    model = Model(hang=True)
    seen: list[float] = []

    async def story() -> None:
        work = asyncio.create_task(JobWorker(store, model, settings).run_once())
        while not seen or seen[-1] < 1.0:
            await asyncio.sleep(0.02)
            job = store.get(job_id)
            assert job is not None
            seen.append(job.progress)
        store.cancel(job_id)
        await asyncio.wait_for(work, timeout=settings.lease_s * 2)

    asyncio.run(story())
    assert seen == sorted(seen) and seen[-1] == 1.0 and any(0 < p < 1 for p in seen)


def test_the_callback_url_gets_the_ended_job(store: SqliteJobStore, settings: JobsSettings) -> None:
    received: list[dict[str, object]] = []
    attempts: list[int] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the first delivery fails, the retry lands
            attempts.append(1)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if len(attempts) == 1:
                self.send_response(503)
            else:
                received.append(json.loads(body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/done"
        job_id = store.create("transcription", {}, str(JFK.path), callback_url=url).id
        worker = JobWorker(store, Model(), settings)
        worker.callback_delay_s = 0.01
        asyncio.run(worker.run_once())
    finally:
        server.shutdown()
    assert len(attempts) == 2
    assert received[0]["id"] == job_id and received[0]["status"] == "succeeded"
    job = store.get(job_id)
    assert job is not None and job.callback_status == "delivered"


def test_a_job_taken_over_from_a_dead_worker_resumes_after_its_finished_windows(
    store: SqliteJobStore, settings: JobsSettings
) -> None:
    settings = settings.model_copy(update={"lease_s": 1.5})
    job_id = submit(store, JFK.path)
    dying = Model(hang_after=2)

    async def story() -> None:
        first = asyncio.create_task(JobWorker(store, dying, settings).run_once())
        while len(store.windows(job_id)) < 2:
            await asyncio.sleep(0.02)
        first.cancel()  # the replica is gone; its lease runs out on its own
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert store.get(job_id).status == "running"  # type: ignore[union-attr]
        await asyncio.sleep(settings.lease_s)
        assert await JobWorker(store, successor, settings).run_once()

    successor = Model()
    asyncio.run(story())
    assert dying.decoded == [0, 1] and successor.decoded == [2, 3]
    job = store.get(job_id)
    assert job is not None and job.status == "succeeded" and job.attempts == 2


def test_a_finished_window_survives_the_store_as_json() -> None:
    from tuned_whisper.jobs.results import decoded_from_json, decoded_to_json

    window = Decoded(
        np.asarray([50364, 400, 50414], dtype=np.int64),
        -0.31,
        0.02,
        0.2,
        "de",
        1.4,
        np.asarray([0.0, 0.5, 1.0]),
    )
    back = decoded_from_json(json.loads(json.dumps(decoded_to_json(window))))
    assert back.tokens.tolist() == window.tokens.tolist() and back.tokens.dtype == np.int64
    assert (back.avg_logprob, back.no_speech_prob, back.temperature, back.language) == (
        -0.31,
        0.02,
        0.2,
        "de",
    )
    assert back.token_timestamps is not None and back.token_timestamps.tolist() == [0.0, 0.5, 1.0]
