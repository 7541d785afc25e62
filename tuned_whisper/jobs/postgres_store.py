"""The shared job store: PostgreSQL (psycopg 3), for several API instances and workers on several machines."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tuned_whisper.jobs.migrations import Run, migrate
from tuned_whisper.jobs.sql import SqlJobStore

if TYPE_CHECKING:
    import psycopg

MIGRATION_LOCK = 0x74772D6A6F6273  # "tw-jobs": the advisory lock that serialises instances upgrading at once


class PostgresJobStore(SqlJobStore):
    """Jobs in PostgreSQL; claims use `FOR UPDATE SKIP LOCKED`, so concurrent workers never share a job."""

    claim_lock = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0, migrate_to: int | None = None) -> None:
        """Connect to `url` (a libpq URL) and upgrade the schema to `migrate_to` (None: the latest)."""
        self.url = url
        self._connect_timeout_s = connect_timeout_s
        # One connection guarded by a lock: the API calls the store from a pool of threads.
        self._lock = threading.Lock()
        self._closed = False
        self._conn = self._connect()
        try:
            with self._write() as run:
                run("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
                self.migrated = migrate(run, target=migrate_to)
        except BaseException:
            self.close()
            raise

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        import psycopg  # here, so that the package imports without the driver when SQLite is used

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=round(self._connect_timeout_s))
        except psycopg.OperationalError as e:
            message = f"could not connect to the job database: {e}; check the URL and that the server runs"
            raise RuntimeError(message) from e

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._closed:
            raise RuntimeError("the job store is closed")
        # A dropped connection (database restart, idle timeout) is replaced on the next call; the call
        # that saw it drop has failed already, and is not retried because it may have been applied.
        if self._conn.closed:
            self._conn = self._connect()
        return self._conn

    @staticmethod
    def _run(conn: psycopg.Connection[tuple[Any, ...]], sql: str, params: Any) -> list[tuple[Any, ...]]:
        # The shared queries use "?" placeholders and contain no literal "?" or "%".
        cursor = conn.execute(sql.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []

    @contextmanager
    def _write(self) -> Iterator[Run]:
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                yield lambda sql, params: self._run(conn, sql, params)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._run(self._connection(), sql, params)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()

    def __repr__(self) -> str:
        return "PostgresJobStore(...)"  # the URL may carry a password
