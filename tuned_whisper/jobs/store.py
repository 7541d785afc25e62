"""The job store's interface: the `Job` record, the `JobStore` protocol and `open_store`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from tuned_whisper.config import JobsSettings

JobKind = Literal["transcription", "translation"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
CallbackStatus = Literal["pending", "delivered", "failed"]

FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
WORKER_LOST = "worker_lost"
"""Error code of a job whose worker stopped renewing its lease once too often."""


def new_job_id() -> str:
    """A fresh, unguessable job id: "job_" and 24 hex characters."""
    return "job_" + secrets.token_hex(12)


@dataclass(frozen=True)
class Job:
    """One asynchronous transcription or translation request and where it stands."""

    id: str
    kind: JobKind
    status: JobStatus
    params: dict[str, Any]
    """The request's form fields, as the API received them."""
    caller: str | None
    """Opaque id of whoever created the job; only they may see or cancel it."""
    callback_url: str | None
    audio_path: str
    audio_s: float | None
    """Total audio seconds, once the audio has been decoded."""
    done_s: float
    """Audio seconds finished so far."""
    attempts: int
    max_attempts: int
    error: dict[str, str] | None
    """`{"code", "message"}` of the last failure, kept when the job is retried."""
    result_path: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    lease_owner: str | None
    """The worker that holds the job while it runs."""
    lease_expires_at: float | None
    callback_status: str | None

    @property
    def progress(self) -> float:
        """Fraction of the audio done, 0..1 (0 while the length is unknown, 1 once succeeded)."""
        if self.status == "succeeded":
            return 1.0
        if not self.audio_s:
            return 0.0
        return min(max(self.done_s / self.audio_s, 0.0), 1.0)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def job_object(job: Job) -> dict[str, Any]:
    """A job as the API shows it (OpenAI-style: `object`, unix-second times)."""

    def seconds(value: float | None) -> int | None:
        return None if value is None else int(value)

    return {
        "id": job.id,
        "object": f"{job.kind}.job",
        "status": job.status,
        "created_at": seconds(job.created_at),
        "started_at": seconds(job.started_at),
        "finished_at": seconds(job.finished_at),
        "progress": round(job.progress, 4),
        "audio_seconds": job.audio_s,
        "audio_seconds_done": round(job.done_s, 3),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error": job.error,
        "model": job.params.get("model"),
        "response_format": job.params.get("response_format", "json"),
        "filename": job.params.get("filename"),
        "callback_url": job.callback_url,
        "callback_status": job.callback_status,
    }


JobPage = tuple[list[Job], bool]
"""A page of jobs and whether more follow (a named alias: inside `JobStore`, `list` is a method)."""


class JobStore(Protocol):
    """Durable job records shared by the API (create, read, cancel) and the workers (claim, run)."""

    def create(
        self,
        kind: JobKind,
        params: dict[str, Any],
        audio_path: str,
        *,
        caller: str | None = None,
        callback_url: str | None = None,
        max_attempts: int = 3,
        job_id: str | None = None,
        now: float | None = None,
    ) -> Job:
        """Record a new queued job."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def list(
        self,
        *,
        status: JobStatus | None = None,
        caller: str | None = None,
        kind: JobKind | None = None,
        limit: int = 20,
        after: str | None = None,
    ) -> JobPage:
        """A page of jobs, newest first, and whether more follow; `after` is the previous page's last id."""
        ...

    def claim(self, owner: str, lease_s: float, *, now: float | None = None) -> Job | None:
        """Take the oldest queued job, or one whose worker's lease expired, for `owner`."""
        ...

    def renew(self, job_id: str, owner: str, lease_s: float, *, now: float | None = None) -> bool:
        """Extend `owner`'s lease; False means the job is no longer theirs and they must stop."""
        ...

    def set_audio_s(self, job_id: str, audio_s: float) -> None: ...

    def record_window(
        self, job_id: str, owner: str, index: int, payload: dict[str, Any], done_s: float
    ) -> bool:
        """Keep one finished window's result (idempotent); False when `owner` lost the job."""
        ...

    def windows(self, job_id: str) -> dict[int, dict[str, Any]]:
        """The finished windows' results by index, so that a resumed job skips them."""
        ...

    def delete_windows(self, job_id: str) -> None: ...

    def succeed(self, job_id: str, owner: str, result_path: str, *, now: float | None = None) -> bool: ...

    def fail(
        self,
        job_id: str,
        owner: str,
        code: str,
        message: str,
        *,
        retry: bool,
        now: float | None = None,
    ) -> Job | None:
        """Requeue (when `retry` and attempts are left) or fail the job; None when `owner` lost it."""
        ...

    def cancel(self, job_id: str, *, caller: str | None = None, now: float | None = None) -> Job | None:
        """Cancel a queued or running job; a finished one comes back unchanged; None if not theirs."""
        ...

    def set_callback_status(self, job_id: str, status: CallbackStatus) -> None: ...

    def close(self) -> None: ...


SQLITE_FILE = "jobs.sqlite3"
"""The file name used when `open_store` is given a directory."""


def open_store(url_or_path: str | Path) -> JobStore:
    """The store at a `postgresql://` URL, or in an SQLite file (a path, `sqlite:///path` or a directory)."""
    target = str(url_or_path)
    if target.startswith(("postgresql://", "postgres://")):
        from tuned_whisper.jobs.postgres_store import PostgresJobStore

        return PostgresJobStore(target)
    from tuned_whisper.jobs.sqlite_store import SqliteJobStore

    # SQLAlchemy's spelling: sqlite:///jobs.db is relative, sqlite:////var/lib/jobs.db absolute.
    path = Path(target.removeprefix("sqlite:///"))
    if path.is_dir():
        path = path / SQLITE_FILE
    return SqliteJobStore(path)


def open_configured_store(settings: JobsSettings) -> JobStore:
    """The store the settings name: `database_url`, else SQLite in `data_dir` (created if missing)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return open_store(settings.database_url or settings.data_dir)
