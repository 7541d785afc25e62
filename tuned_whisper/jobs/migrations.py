"""Numbered schema migrations, written once in SQL that both SQLite and PostgreSQL accept.

Append a new `Migration` to change the schema; never edit one that has shipped, since databases that already
applied it will not apply it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
"""Executes one statement (`?` placeholders) inside the caller's transaction and returns its rows."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# DOUBLE PRECISION is REAL to SQLite; JSON is kept as TEXT so that one schema serves both databases.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "jobs and their finished windows",
        (
            """CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                kind TEXT NOT NULL CHECK (kind IN ('transcription', 'translation')),
                status TEXT NOT NULL
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
                params TEXT NOT NULL,
                caller TEXT,
                callback_url TEXT,
                audio_path TEXT NOT NULL,
                audio_s DOUBLE PRECISION,
                done_s DOUBLE PRECISION NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL,
                error TEXT,
                result_path TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                started_at DOUBLE PRECISION,
                finished_at DOUBLE PRECISION,
                lease_owner TEXT,
                lease_expires_at DOUBLE PRECISION,
                callback_status TEXT
            )""",
            """CREATE TABLE job_windows (
                job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
                idx INTEGER NOT NULL,
                payload TEXT NOT NULL,
                PRIMARY KEY (job_id, idx)
            )""",
        ),
    ),
    Migration(
        2,
        "indexes for claiming (status, age) and for each caller's newest-first listing",
        (
            "CREATE INDEX jobs_by_status ON jobs (status, created_at, id)",
            "CREATE INDEX jobs_by_caller ON jobs (caller, created_at, id)",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version


def migrate(run: Run, *, target: int | None = None, now: float | None = None) -> tuple[int, ...]:
    """Apply the migrations above the database's version up to `target` (default: all); returns them.

    The caller holds a write transaction (and, on PostgreSQL, a lock that serialises instances starting
    together), so a failed migration leaves the schema as it was.
    """
    run(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)",
        (),
    )
    current = run("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", ())[0][0]
    if current > LATEST:
        raise RuntimeError(
            f"the job database is at schema version {current}, newer than this code's {LATEST}; "
            "upgrade tuned-whisper or point it at another database"
        )
    applied = []
    for migration in MIGRATIONS:
        if current < migration.version <= (target or LATEST):
            for statement in migration.statements:
                run(statement, ())
            stamp = time.time() if now is None else now
            record = "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"
            run(record, (migration.version, stamp))
            applied.append(migration.version)
    return tuple(applied)
