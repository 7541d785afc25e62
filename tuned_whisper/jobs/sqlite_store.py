"""The embedded job store: one SQLite file, shared safely by threads and by processes on one machine."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuned_whisper.jobs.migrations import Run, migrate
from tuned_whisper.jobs.sql import SqlJobStore


class SqliteJobStore(SqlJobStore):
    """Jobs in an SQLite file in WAL mode; not for network file systems, where its locking is unreliable.

    Every write is a `BEGIN IMMEDIATE` transaction, so writers (threads with their own store, other
    processes) queue on the file's write lock for up to `busy_timeout_s` instead of failing.
    """

    def __init__(
        self, path: str | Path, *, busy_timeout_s: float = 30.0, migrate_to: int | None = None
    ) -> None:
        """Open (creating the file and its directory if needed) and upgrade the schema to `migrate_to`."""
        if sqlite3.sqlite_version_info < (3, 35):  # RETURNING, used by every conditional update
            found = sqlite3.sqlite_version
            raise RuntimeError(f"the job store needs SQLite 3.35 or newer; this Python has {found}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection guarded by a lock: the API calls the store from a pool of threads.
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # Before anything else, so that even switching to WAL waits for a busy file rather than failing.
        self._conn.execute(f"PRAGMA busy_timeout = {round(busy_timeout_s * 1000)}")
        # WAL: readers never block the writer; the default synchronous=FULL keeps a queued job across a crash.
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        try:
            with self._write() as run:
                self.migrated = migrate(run, target=migrate_to)
        except BaseException:
            self._conn.close()
            raise

    def _execute(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    @contextmanager
    def _write(self) -> Iterator[Run]:
        with self._lock:
            # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes
            # can fail with SQLITE_BUSY when another writer got in between, without waiting.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._execute
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._execute(sql, params)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SqliteJobStore({str(self.path)!r})"
