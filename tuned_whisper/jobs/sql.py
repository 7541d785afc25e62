"""The job store's queries, shared by SQLite and PostgreSQL; subclasses supply connection and transactions."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, get_args

from tuned_whisper.jobs.migrations import Run
from tuned_whisper.jobs.store import WORKER_LOST, CallbackStatus, Job, JobKind, JobPage, JobStatus, new_job_id

COLUMNS = (
    "id",
    "kind",
    "status",
    "params",
    "caller",
    "callback_url",
    "audio_path",
    "audio_s",
    "done_s",
    "attempts",
    "max_attempts",
    "error",
    "result_path",
    "created_at",
    "started_at",
    "finished_at",
    "lease_owner",
    "lease_expires_at",
    "callback_status",
)
SELECT = f"SELECT {', '.join(COLUMNS)} FROM jobs"
RETURNING = f" RETURNING {', '.join(COLUMNS)}"
INSERT = f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
OWNED = " WHERE id = ? AND status = 'running' AND lease_owner = ?"
"""The condition of every worker write: the job still runs under this worker's lease."""
RELEASE = "lease_owner = NULL, lease_expires_at = NULL"
FLOATS = ("audio_s", "done_s", "created_at", "started_at", "finished_at", "lease_expires_at")


def job_from_row(row: tuple[Any, ...]) -> Job:
    values = dict(zip(COLUMNS, row, strict=True))
    # SQLite's RETURNING yields 0, not 0.0, for a REAL column that was given an integer.
    values.update({name: float(values[name]) for name in FLOATS if values[name] is not None})
    values["params"] = json.loads(values["params"])
    values["error"] = json.loads(values["error"]) if values["error"] else None
    return Job(**values)


def job_to_row(job: Job) -> tuple[Any, ...]:
    values = {name: getattr(job, name) for name in COLUMNS}
    values["params"] = json.dumps(job.params)
    values["error"] = json.dumps(job.error) if job.error else None
    return tuple(values.values())


def _clock(now: float | None) -> float:
    return time.time() if now is None else now


class SqlJobStore(ABC):
    """`JobStore` over a DB-API connection, in SQL that SQLite (3.35+) and PostgreSQL both run."""

    claim_lock: str = ""
    """Appended to the claim query; PostgreSQL skips rows another claimer has locked."""
    migrated: tuple[int, ...] = ()
    """The schema migrations this store applied when it opened (empty when the schema was current)."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Run]:
        """A write transaction, committed when the block exits normally and rolled back otherwise."""

    @abstractmethod
    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query run on its own (no transaction spanning several statements)."""

    @abstractmethod
    def close(self) -> None: ...

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
        if kind not in get_args(JobKind):
            raise ValueError(f"job kind must be one of {get_args(JobKind)}, not {kind!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        job = Job(
            id=job_id or new_job_id(),
            kind=kind,
            status="queued",
            params=dict(params),
            caller=caller,
            callback_url=callback_url,
            audio_path=str(audio_path),
            audio_s=None,
            done_s=0.0,
            attempts=0,
            max_attempts=max_attempts,
            error=None,
            result_path=None,
            created_at=_clock(now),
            started_at=None,
            finished_at=None,
            lease_owner=None,
            lease_expires_at=None,
            callback_status="pending" if callback_url else None,
        )
        with self._write() as run:
            run(INSERT, job_to_row(job))
        return job

    def get(self, job_id: str) -> Job | None:
        rows = self._read(SELECT + " WHERE id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

    def list(
        self,
        *,
        status: JobStatus | None = None,
        caller: str | None = None,
        kind: JobKind | None = None,
        limit: int = 20,
        after: str | None = None,
    ) -> JobPage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        where: list[str] = []
        params: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if caller is not None:
            where.append("caller = ?")
            params.append(caller)
        if after is not None:
            cursor = self.get(after)
            # Another caller's job is as unknown as a missing one: ids must not leak across callers.
            if cursor is None or (caller is not None and cursor.caller != caller):
                raise ValueError(f"no job {after!r} to list after; pass the last id of the previous page")
            where.append("(created_at, id) < (?, ?)")
            params += [cursor.created_at, cursor.id]
        sql = SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._read(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit + 1))
        return [job_from_row(row) for row in rows[:limit]], len(rows) > limit

    def claim(self, owner: str, lease_s: float, *, now: float | None = None) -> Job | None:
        at = _clock(now)
        candidates = (
            SELECT + " WHERE status = 'queued' OR (status = 'running' AND lease_expires_at <= ?)"
            " ORDER BY created_at, id LIMIT 1" + self.claim_lock
        )
        with self._write() as run:
            while rows := run(candidates, (at,)):
                job = job_from_row(rows[0])
                if job.status == "running" and job.attempts >= job.max_attempts:
                    self._fail_lost(run, job, at)
                    continue
                claimed = run(
                    "UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires_at = ?,"
                    " started_at = COALESCE(started_at, ?), attempts = attempts + 1 WHERE id = ?" + RETURNING,
                    (owner, at + lease_s, at, job.id),
                )
                return job_from_row(claimed[0])
        return None

    @staticmethod
    def _fail_lost(run: Run, job: Job, at: float) -> None:
        error = {
            "code": WORKER_LOST,
            "message": f"the worker running this job stopped responding on all {job.attempts} attempts",
        }
        run(
            "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, " + RELEASE + " WHERE id = ?",
            (json.dumps(error), at, job.id),
        )

    def renew(self, job_id: str, owner: str, lease_s: float, *, now: float | None = None) -> bool:
        with self._write() as run:
            sql = "UPDATE jobs SET lease_expires_at = ?" + OWNED + " RETURNING id"
            return bool(run(sql, (_clock(now) + lease_s, job_id, owner)))

    def set_audio_s(self, job_id: str, audio_s: float) -> None:
        with self._write() as run:
            run("UPDATE jobs SET audio_s = ? WHERE id = ?", (audio_s, job_id))

    def record_window(
        self, job_id: str, owner: str, index: int, payload: dict[str, Any], done_s: float
    ) -> bool:
        with self._write() as run:
            # The update first: on PostgreSQL it locks the job row, so the lease cannot change underneath.
            if not run("UPDATE jobs SET done_s = ?" + OWNED + " RETURNING id", (done_s, job_id, owner)):
                return False
            run(
                "INSERT INTO job_windows (job_id, idx, payload) VALUES (?, ?, ?)"
                " ON CONFLICT (job_id, idx) DO UPDATE SET payload = excluded.payload",
                (job_id, index, json.dumps(payload)),
            )
            return True

    def windows(self, job_id: str) -> dict[int, dict[str, Any]]:
        rows = self._read("SELECT idx, payload FROM job_windows WHERE job_id = ? ORDER BY idx", (job_id,))
        return {index: json.loads(payload) for index, payload in rows}

    def delete_windows(self, job_id: str) -> None:
        with self._write() as run:
            run("DELETE FROM job_windows WHERE job_id = ?", (job_id,))

    def succeed(self, job_id: str, owner: str, result_path: str, *, now: float | None = None) -> bool:
        with self._write() as run:
            sql = (
                "UPDATE jobs SET status = 'succeeded', result_path = ?, finished_at = ?,"
                " done_s = COALESCE(audio_s, done_s), " + RELEASE
            )
            return bool(run(sql + OWNED + " RETURNING id", (str(result_path), _clock(now), job_id, owner)))

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
        error = json.dumps({"code": code, "message": message})
        requeue = "UPDATE jobs SET status = 'queued', error = ?, " + RELEASE + OWNED
        give_up = "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, " + RELEASE + OWNED
        with self._write() as run:
            # Conditional updates rather than read-then-write: each re-checks its condition on the row.
            rows = (
                run(requeue + " AND attempts < max_attempts" + RETURNING, (error, job_id, owner))
                if retry
                else []
            )
            rows = rows or run(give_up + RETURNING, (error, _clock(now), job_id, owner))
            return job_from_row(rows[0]) if rows else None

    def cancel(self, job_id: str, *, caller: str | None = None, now: float | None = None) -> Job | None:
        mine, params = (" AND caller = ?", (job_id, caller)) if caller is not None else ("", (job_id,))
        with self._write() as run:
            sql = (
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, "
                + RELEASE
                + " WHERE id = ? AND status IN ('queued', 'running')"
            )
            rows = run(sql + mine + RETURNING, (_clock(now), *params))
            rows = rows or run(SELECT + " WHERE id = ?" + mine, params)
            return job_from_row(rows[0]) if rows else None

    def set_callback_status(self, job_id: str, status: CallbackStatus) -> None:
        with self._write() as run:
            run("UPDATE jobs SET callback_status = ? WHERE id = ?", (status, job_id))
