"""A job worker: claims queued jobs from the store, keeps their lease alive while it transcribes them,
records progress, and saves the result; a failure is retried until the job's attempts run out.

No web code: the ingress runs workers beside its API, and a test can run one over any `transcribe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from tuned_whisper.audio import SAMPLE_RATE, AudioDecodeError, Samples, decode_audio_to_disk
from tuned_whisper.config import JobsSettings
from tuned_whisper.engine.longform import WindowLog
from tuned_whisper.engine.windows import Decoded
from tuned_whisper.jobs.callbacks import deliver
from tuned_whisper.jobs.results import decoded_from_json, decoded_to_json, save_transcript
from tuned_whisper.jobs.store import Job, JobStore, job_object
from tuned_whisper.types import TranscribeOptions, Transcript

log = logging.getLogger("tuned_whisper.jobs")

Transcribe = Callable[
    [Samples, TranscribeOptions, Callable[[float], None], str, WindowLog], Awaitable[Transcript]
]
"""(audio, options, progress, caller, window log) -> transcript: the one long-form path, at background
priority, skipping the windows an earlier attempt finished and recording each one it finishes."""


class LeaseLost(Exception):
    """The job was cancelled, or another worker took it over: stop working on it."""


def job_options(job: Job) -> TranscribeOptions:
    """The options a job was submitted with (checked by the API when it was created)."""
    p = job.params
    return TranscribeOptions(
        language=p.get("language"),
        task="translate" if job.kind == "translation" else "transcribe",
        initial_prompt=p.get("prompt"),
        temperature=float(p.get("temperature", 0.0)),
        word_timestamps=bool(p.get("word_timestamps", False)),
        adapter=p.get("adapter"),
    )


def result_path(settings: JobsSettings, job_id: str) -> Path:
    return settings.data_dir / "results" / f"{job_id}.json"


class JobWorker:
    """One worker; `run` loops until stopped, `run_once` handles at most one job (for tests)."""

    def __init__(self, store: JobStore, transcribe: Transcribe, settings: JobsSettings) -> None:
        self.store = store
        self.transcribe = transcribe
        self.settings = settings
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        self.callback_delay_s = 1.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:  # the store was unreachable, say: try again later, never die
                log.exception("%s: job loop failed; retrying", self.owner)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.poll_s)

    async def run_once(self) -> bool:
        job = await asyncio.to_thread(self.store.claim, self.owner, self.settings.lease_s)
        if job is None:
            return False
        log.info("%s: job %s attempt %d", self.owner, job.id, job.attempts)
        work = asyncio.create_task(self._work(job))
        lost = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(job, work, lost))
        try:
            await work
        except AudioDecodeError as exc:  # a bad file fails the same way every time
            await asyncio.to_thread(self.store.fail, job.id, self.owner, exc.reason, str(exc), retry=False)
        except (LeaseLost, asyncio.CancelledError):
            if not lost.is_set() and not work.done():
                raise  # this worker is stopping: its lease runs out and another worker takes the job
            log.info("%s: job %s was cancelled or taken over", self.owner, job.id)
        except Exception as exc:
            log.exception("%s: job %s failed", self.owner, job.id)
            message = f"transcription failed: {exc}"
            await asyncio.to_thread(
                self.store.fail, job.id, self.owner, "transcription_failed", message, retry=True
            )
        finally:
            heartbeat.cancel()
            work.cancel()
        await self._callback(job.id)
        return True

    async def _callback(self, job_id: str) -> None:
        """POST the ended job to its `callback_url` (a job queued again for a retry has not ended)."""
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None or not job.callback_url or not job.finished or job.callback_status != "pending":
            return
        delivered = await deliver(job.callback_url, job_object(job), delay_s=self.callback_delay_s)
        await asyncio.to_thread(
            self.store.set_callback_status, job.id, "delivered" if delivered else "failed"
        )

    async def _heartbeat(self, job: Job, work: asyncio.Task[None], lost: asyncio.Event) -> None:
        """Renew the lease every third of it; when the store says no, stop the work."""
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            if not await asyncio.to_thread(self.store.renew, job.id, self.owner, self.settings.lease_s):
                lost.set()
                work.cancel()
                return

    async def _work(self, job: Job) -> None:
        name = job.params.get("filename") or "upload"
        decode = functools.partial(decode_audio_to_disk, max_duration_s=self.settings.max_audio_s, name=name)
        audio = await asyncio.to_thread(decode, Path(job.audio_path))
        total = len(audio) / SAMPLE_RATE
        await asyncio.to_thread(self.store.set_audio_s, job.id, total)
        loop = asyncio.get_running_loop()
        known = await asyncio.to_thread(self.store.windows, job.id)
        if known:
            log.info("%s: job %s resumes after %d finished windows", self.owner, job.id, len(known))
        finished: list[tuple[int, Decoded]] = []

        def record(index: int, decoded: Decoded) -> None:
            finished.append((index, decoded))  # stored with the progress that follows it at once

        def progress(fraction: float) -> None:
            while finished:
                index, decoded = finished.pop()
                payload = decoded_to_json(decoded)
                save = functools.partial(self.store.record_window, job.id, self.owner, index, payload)
                loop.run_in_executor(None, save, min(fraction, 1.0) * total)

        window_log = WindowLog({i: decoded_from_json(p) for i, p in known.items()}, record)
        transcript = await self.transcribe(
            audio, job_options(job), progress, job.caller or job.id, window_log
        )
        path = result_path(self.settings, job.id)
        await asyncio.to_thread(save_transcript, transcript, path)
        if not await asyncio.to_thread(self.store.succeed, job.id, self.owner, str(path)):
            raise LeaseLost(job.id)
        await asyncio.to_thread(self.store.delete_windows, job.id)
