"""Durable asynchronous transcription jobs: records, leases and finished windows in SQLite or PostgreSQL."""

from tuned_whisper.jobs.migrations import LATEST as SCHEMA_VERSION
from tuned_whisper.jobs.postgres_store import PostgresJobStore
from tuned_whisper.jobs.sqlite_store import SqliteJobStore
from tuned_whisper.jobs.store import (
    FINISHED,
    WORKER_LOST,
    CallbackStatus,
    Job,
    JobKind,
    JobPage,
    JobStatus,
    JobStore,
    new_job_id,
    open_configured_store,
    open_store,
)

__all__ = [
    "FINISHED",
    "SCHEMA_VERSION",
    "WORKER_LOST",
    "CallbackStatus",
    "Job",
    "JobKind",
    "JobPage",
    "JobStatus",
    "JobStore",
    "PostgresJobStore",
    "SqliteJobStore",
    "new_job_id",
    "open_configured_store",
    "open_store",
]
