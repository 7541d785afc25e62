"""The durable job store, on a real SQLite file and a real PostgreSQL server: the life of a job from upload
to result, workers that die, retries, cancellation, schema upgrades and workers racing for the queue."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import PostgresCluster, postgres_cluster
from tuned_whisper.jobs import WORKER_LOST, PostgresJobStore, SqliteJobStore, open_store
from tuned_whisper.jobs.sql import SqlJobStore

LEASE_S = 30.0
WINDOW = {"text": " And so, my fellow Americans", "segments": [{"start": 0.0, "end": 2.5}]}


@dataclass
class Backend:
    """One database behind the store, and a side door (the raw driver) to look at what it holds."""

    name: str
    target: str
    """What `open_store` takes: an SQLite file path or a PostgreSQL URL."""
    opened: list[SqlJobStore] = field(default_factory=list)

    def open(self, **options: Any) -> SqlJobStore:
        store_class = SqliteJobStore if self.name == "sqlite" else PostgresJobStore
        store = store_class(self.target, **options)
        self.opened.append(store)
        return store

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.name == "sqlite":
            with closing(sqlite3.connect(self.target)) as conn:
                return conn.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(self.target) as conn:
            return conn.execute(sql).fetchall()

    def indexes(self) -> set[str]:
        if self.name == "sqlite":
            rows = self.query("SELECT name FROM sqlite_master WHERE type = 'index'")
        else:
            rows = self.query("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")
        return {name for (name,) in rows if name.startswith("jobs_by_")}


@pytest.fixture(scope="session")
def cluster() -> Iterator[PostgresCluster]:
    with postgres_cluster() as running:
        yield running


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        target = str(tmp_path / "data" / "jobs.sqlite3")
    else:
        cluster: PostgresCluster = request.getfixturevalue("cluster")
        target = cluster.create_database(f"jobs_{uuid.uuid4().hex[:12]}")
    backend = Backend(request.param, target)
    yield backend
    for store in backend.opened:
        store.close()


@pytest.fixture
def store(backend: Backend) -> SqlJobStore:
    return backend.open()


def test_jobs_are_listed_newest_first_page_by_page_and_only_to_their_caller(store: SqlJobStore) -> None:
    alice = [
        store.create("transcription", {"n": i}, f"/a/{i}.wav", caller="alice", now=100 + i) for i in range(5)
    ]
    bob = [store.create("translation", {"n": i}, f"/b/{i}.wav", caller="bob", now=200 + i) for i in range(2)]
    first = alice[0]
    assert re.fullmatch(r"job_[0-9a-f]{24}", first.id)
    assert (first.status, first.attempts, first.progress, first.max_attempts) == ("queued", 0, 0.0, 3)
    assert store.get(first.id) == first
    assert store.get("job_" + "0" * 24) is None

    pages, after = [], None
    while True:
        page, has_more = store.list(caller="alice", limit=2, after=after)
        pages.append([job.params["n"] for job in page])
        if not has_more:
            break
        after = page[-1].id
    assert pages == [[4, 3], [2, 1], [0]]

    everyone, has_more = store.list()
    assert [job.id for job in everyone] == [job.id for job in reversed(alice + bob)] and not has_more
    assert store.list(caller="bob") == ([bob[1], bob[0]], False)
    with pytest.raises(ValueError, match="no job"):
        store.list(caller="alice", after=bob[0].id)  # bob's job id is no cursor for alice

    claimed = store.claim("worker-1", LEASE_S, now=300)
    assert claimed is not None and claimed.id == first.id
    assert store.list(status="running") == ([claimed], False)
    queued, _ = store.list(status="queued", caller="alice")
    assert [job.params["n"] for job in queued] == [4, 3, 2, 1]


def test_claim_hands_out_the_oldest_queued_job_once(store: SqlJobStore) -> None:
    newer = store.create("transcription", {}, "/newer.wav", now=20)
    older = store.create("transcription", {}, "/older.wav", now=10)

    job = store.claim("worker-1", LEASE_S, now=50)
    assert job is not None and job.id == older.id
    assert (job.status, job.lease_owner, job.attempts) == ("running", "worker-1", 1)
    assert (job.started_at, job.lease_expires_at) == (50, 50 + LEASE_S)
    assert store.get(older.id) == job

    second = store.claim("worker-2", LEASE_S, now=51)
    assert second is not None and second.id == newer.id
    assert store.claim("worker-3", LEASE_S, now=52) is None


def test_a_worker_that_stops_renewing_loses_the_job_and_its_successor_resumes_from_its_windows(
    store: SqlJobStore,
) -> None:
    job = store.create("transcription", {"language": "en"}, "/speech.wav", now=0)
    store.set_audio_s(job.id, 90.0)
    assert store.claim("worker-1", LEASE_S, now=10) is not None
    assert store.record_window(job.id, "worker-1", 0, WINDOW, done_s=30.0)
    assert store.renew(job.id, "worker-1", LEASE_S, now=20)  # the lease now runs to 50
    assert store.record_window(job.id, "worker-1", 1, {**WINDOW, "text": " ask not"}, done_s=60.0)
    assert store.record_window(job.id, "worker-1", 1, {**WINDOW, "text": " ask not"}, done_s=60.0)  # again

    assert store.claim("worker-2", LEASE_S, now=49) is None  # worker-1 might still be alive
    taken = store.claim("worker-2", LEASE_S, now=51)
    assert taken is not None and taken.id == job.id
    assert (taken.lease_owner, taken.attempts, taken.started_at) == ("worker-2", 2, 10)
    assert taken.progress == pytest.approx(60 / 90)
    assert store.windows(job.id) == {0: WINDOW, 1: {**WINDOW, "text": " ask not"}}

    # worker-1 wakes up: every write it tries is refused, so it stops and nothing of its lands.
    assert not store.renew(job.id, "worker-1", LEASE_S, now=52)
    assert not store.record_window(job.id, "worker-1", 2, {"text": "stale"}, done_s=90.0)
    assert not store.succeed(job.id, "worker-1", "/stale.json", now=52)
    assert store.fail(job.id, "worker-1", "oops", "stale", retry=True) is None
    assert sorted(store.windows(job.id)) == [0, 1]

    assert store.record_window(job.id, "worker-2", 2, WINDOW, done_s=90.0)
    assert store.succeed(job.id, "worker-2", "/results/speech.json", now=60)
    done = store.get(job.id)
    assert done is not None
    assert (done.status, done.result_path, done.finished_at, done.progress) == (
        "succeeded",
        "/results/speech.json",
        60,
        1.0,
    )
    assert (done.lease_owner, done.lease_expires_at) == (None, None)
    store.delete_windows(job.id)
    assert store.windows(job.id) == {}


def test_a_job_whose_workers_keep_dying_fails_as_worker_lost(store: SqlJobStore) -> None:
    doomed = store.create("transcription", {}, "/doomed.wav", max_attempts=2, now=0)
    waiting = store.create("transcription", {}, "/waiting.wav", now=1)

    first = store.claim("worker-1", 10, now=5)
    second = store.claim("worker-2", 10, now=16)  # worker-1's lease ran out at 15
    assert first is not None and second is not None
    assert (first.id, second.id, second.attempts) == (doomed.id, doomed.id, 2)

    third = store.claim("worker-3", 10, now=27)  # worker-2 died too: no third attempt
    assert third is not None and third.id == waiting.id
    lost = store.get(doomed.id)
    assert lost is not None
    assert (lost.status, lost.finished_at, lost.lease_owner, lost.attempts) == ("failed", 27, None, 2)
    assert lost.error is not None and lost.error["code"] == WORKER_LOST


def test_a_failed_attempt_is_retried_until_the_attempts_run_out(store: SqlJobStore) -> None:
    job = store.create("transcription", {}, "/flaky.wav", max_attempts=3, now=0)
    for attempt in (1, 2):
        assert store.claim("worker", LEASE_S, now=attempt) is not None
        requeued = store.fail(job.id, "worker", "decode_error", f"attempt {attempt}", retry=True, now=attempt)
        assert requeued is not None
        assert (requeued.status, requeued.attempts, requeued.lease_owner) == ("queued", attempt, None)
        assert requeued.error == {"code": "decode_error", "message": f"attempt {attempt}"}
        assert requeued.finished_at is None

    assert store.claim("worker", LEASE_S, now=3) is not None
    final = store.fail(job.id, "worker", "decode_error", "attempt 3", retry=True, now=3)
    assert final is not None and (final.status, final.attempts, final.finished_at) == ("failed", 3, 3)
    assert store.claim("worker", LEASE_S, now=4) is None

    hopeless = store.create("transcription", {}, "/not-audio.txt", now=5)
    assert store.claim("worker", LEASE_S, now=5) is not None
    failed = store.fail(hopeless.id, "worker", "invalid_audio", "not audio", retry=False, now=6)
    assert failed is not None and (failed.status, failed.attempts) == ("failed", 1)


def test_cancelling_a_queued_job_and_a_running_one(store: SqlJobStore) -> None:
    running = store.create("transcription", {}, "/long.wav", caller="alice", now=0)
    assert store.claim("worker", LEASE_S, now=1) is not None
    queued = store.create("transcription", {}, "/next.wav", caller="alice", now=2)

    assert store.cancel(queued.id, caller="bob", now=3) is None  # not bob's
    assert store.get(queued.id) == queued
    cancelled = store.cancel(queued.id, caller="alice", now=3)
    assert cancelled is not None and (cancelled.status, cancelled.finished_at) == ("cancelled", 3)
    assert store.claim("worker-2", LEASE_S, now=4) is None  # a cancelled job is not work

    stopped = store.cancel(running.id, now=5)
    assert stopped is not None and (stopped.status, stopped.lease_owner) == ("cancelled", None)
    assert not store.renew(running.id, "worker", LEASE_S, now=6)  # the worker's heartbeat tells it to stop
    assert not store.record_window(running.id, "worker", 0, WINDOW, done_s=30.0)
    assert not store.succeed(running.id, "worker", "/late.json", now=6)

    assert store.cancel(running.id, now=7) == stopped  # already finished: returned as it is
    assert store.cancel("job_" + "f" * 24) is None


def test_progress_is_clamped_and_unknown_until_the_length_is(store: SqlJobStore) -> None:
    job = store.create("transcription", {}, "/a.wav", now=0)
    assert job.progress == 0.0
    store.set_audio_s(job.id, 0.0)  # an empty file: no division by zero
    fetched = store.get(job.id)
    assert fetched is not None and fetched.progress == 0.0
    assert dataclasses.replace(job, audio_s=10.0, done_s=2.5).progress == 0.25
    assert dataclasses.replace(job, audio_s=10.0, done_s=12.0).progress == 1.0


def test_a_reopened_store_keeps_every_job_window_and_callback(backend: Backend, store: SqlJobStore) -> None:
    job = store.create(
        "translation",
        {"model": "whisper-1", "response_format": "srt", "temperature": 0.2},
        "/uploads/talk.m4a",
        caller="key-1",
        callback_url="https://example.com/hook",
        max_attempts=5,
        now=0,
    )
    assert job.callback_status == "pending"
    assert store.claim("worker", LEASE_S, now=1) is not None
    assert store.record_window(job.id, "worker", 0, WINDOW, done_s=30.0)
    assert store.succeed(job.id, "worker", "/results/talk.json", now=2)
    store.set_callback_status(job.id, "delivered")
    before = store.get(job.id)
    store.close()

    reopened = backend.open()
    assert reopened.migrated == ()  # the schema was current: nothing applied
    after = reopened.get(job.id)
    assert after == before and after is not None and after.callback_status == "delivered"
    assert after.params == {"model": "whisper-1", "response_format": "srt", "temperature": 0.2}
    assert reopened.windows(job.id) == {0: WINDOW}


def test_an_old_database_is_upgraded_once_and_a_newer_one_refused(backend: Backend) -> None:
    old = backend.open(migrate_to=1)
    assert old.migrated == (1,)
    job = old.create("transcription", {}, "/kept.wav", caller="alice", now=0)
    old.close()
    assert backend.indexes() == set()

    upgraded = backend.open()
    assert upgraded.migrated == (2,)
    assert backend.indexes() == {"jobs_by_status", "jobs_by_caller"}
    assert upgraded.list(caller="alice") == ([job], False)
    stamps = backend.query("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    assert [version for version, _ in stamps] == [1, 2]

    assert backend.open().migrated == ()
    assert backend.query("SELECT version, applied_at FROM schema_migrations ORDER BY version") == stamps

    _write_version(backend, 99)  # a newer release upgraded the database, then this one starts
    with pytest.raises(RuntimeError, match="newer than this code"):
        backend.open()


def _write_version(backend: Backend, version: int) -> None:
    sql = f"INSERT INTO schema_migrations (version, applied_at) VALUES ({version}, 0)"
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.target)) as conn, conn:
            conn.execute(sql)
    else:
        import psycopg

        with psycopg.connect(backend.target, autocommit=True) as conn:
            conn.execute(sql)


def _drain(store: SqlJobStore, owner: str) -> list[str]:
    """What one worker gets by claiming until the queue is empty."""
    claimed = []
    while job := store.claim(owner, LEASE_S, now=1000):
        claimed.append(job.id)
    return claimed


def _drain_from_process(target: str, owner: str) -> list[str]:
    with closing(open_store(target)) as store:
        return _drain(store, owner)


def _queue_jobs(store: SqlJobStore, count: int) -> set[str]:
    return {store.create("transcription", {}, f"/{i}.wav", now=i).id for i in range(count)}


def _assert_each_claimed_once(store: SqlJobStore, queued: set[str], claims: dict[str, list[str]]) -> None:
    every_claim = [job_id for ids in claims.values() for job_id in ids]
    assert sorted(every_claim) == sorted(queued)  # no job twice, none left behind
    for owner, ids in claims.items():
        for job_id in ids:
            job = store.get(job_id)
            assert job is not None and (job.status, job.lease_owner, job.attempts) == ("running", owner, 1)


@pytest.mark.parametrize("stores", ["a store each", "one shared store"])
def test_workers_racing_in_threads_each_get_distinct_jobs(
    backend: Backend, store: SqlJobStore, stores: str
) -> None:
    queued = _queue_jobs(store, 60)
    workers = 8
    start = threading.Barrier(workers)
    claims: dict[str, list[str]] = {}

    def work(owner: str) -> None:
        own = backend.open() if stores == "a store each" else store
        start.wait()
        claims[owner] = _drain(own, owner)

    threads = [threading.Thread(target=work, args=(f"thread-{i}",)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(claims) == workers, "a worker thread failed; see its traceback above"
    _assert_each_claimed_once(store, queued, claims)


def test_worker_processes_share_one_queue(backend: Backend, store: SqlJobStore) -> None:
    queued = _queue_jobs(store, 40)
    owners = [f"process-{i}" for i in range(3)]
    # spawn, not fork: a forked child would inherit this process's open database connections.
    with ProcessPoolExecutor(len(owners), mp_context=get_context("spawn")) as pool:
        results = pool.map(_drain_from_process, [backend.target] * len(owners), owners)
        claims = dict(zip(owners, results, strict=True))
    _assert_each_claimed_once(store, queued, claims)


def test_open_store_picks_the_database_from_the_target(tmp_path: Path, cluster: PostgresCluster) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with closing(open_store(data_dir)) as in_dir:
        assert isinstance(in_dir, SqliteJobStore) and in_dir.path == data_dir / "jobs.sqlite3"
    with closing(open_store(f"sqlite:///{tmp_path}/url.db")) as from_url:
        assert isinstance(from_url, SqliteJobStore) and from_url.path == tmp_path / "url.db"
    with closing(sqlite3.connect(tmp_path / "url.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    url = cluster.create_database("open_store")
    for scheme in ("postgresql://", "postgres://"):
        with closing(open_store(url.replace("postgresql://", scheme))) as shared:
            assert isinstance(shared, PostgresJobStore)


def test_the_package_imports_without_the_postgres_driver(tmp_path: Path) -> None:
    code = (
        "import sys; from tuned_whisper.jobs import open_store; "
        f"open_store({str(tmp_path / 'jobs.db')!r}).close(); "
        "sys.exit('psycopg was imported' if 'psycopg' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
