"""Asynchronous jobs on the real served app (Ray Serve, the real checkpoint, SQLite on disk): a user hands
over a recording, gets an id at once, polls it, and fetches subtitles when it is done."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.clips import GERMAN, JFK, SONNETS
from tests.conftest import API_KEY, SECOND_KEY, UPLOAD_LIMIT
from tuned_whisper.audio import decode_audio
from tuned_whisper.evaluation import score
from tuned_whisper.jobs import Job, new_job_id, open_store
from tuned_whisper.jobs.sql import INSERT, job_to_row

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {API_KEY}"}
JOBS = "/v1/audio/transcriptions/jobs"


def submit(url: str, name: str, data: bytes, headers: dict[str, str] = AUTH, **form: str) -> httpx.Response:
    return httpx.post(f"{url}{JOBS}", files={"file": (name, data)}, data=form, headers=headers, timeout=120)


def wait(
    url: str, job_id: str, *, until: tuple[str, ...] = ("succeeded", "failed", "cancelled")
) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}{JOBS}/{job_id}", headers=AUTH, timeout=30).json()
        if job["status"] in until:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not reach {until}: {job}")


def test_a_recording_handed_over_as_a_job_comes_back_as_subtitles(served_app: str) -> None:
    response = submit(served_app, "jfk.flac", JFK.path.read_bytes(), response_format="srt")
    assert response.status_code == 202
    job = response.json()
    assert job["object"] == "transcription.job" and job["status"] in ("queued", "running")
    done = wait(served_app, job["id"])
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["attempts"] == 1
    assert done["audio_seconds"] == pytest.approx(JFK.duration, abs=0.05)
    srt = httpx.get(f"{served_app}{JOBS}/{job['id']}/result", headers=AUTH, timeout=30)
    assert srt.status_code == 200 and srt.text.startswith("1\n00:00:00,000 --> ")
    assert JFK.missing_phrases(srt.text) == []
    verbose = httpx.get(
        f"{served_app}{JOBS}/{job['id']}/result", params={"response_format": "verbose_json"}, headers=AUTH
    ).json()
    assert verbose["language"] == "english" and verbose["segments"][0]["avg_logprob"] < 0
    sync = httpx.post(
        f"{served_app}/v1/audio/transcriptions",
        files={"file": ("jfk.flac", JFK.path.read_bytes())},
        data={"response_format": "verbose_json"},
        headers=AUTH,
        timeout=120,
    ).json()
    assert verbose["text"] == sync["text"]  # the same long-form path as the synchronous endpoint


def test_a_recording_over_the_synchronous_upload_limit_is_accepted_as_a_job(served_app: str) -> None:
    stereo = np.repeat(decode_audio(SONNETS.path)[:, np.newaxis], 2, axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, 16000, format="WAV", subtype="PCM_16")
    assert buffer.tell() > UPLOAD_LIMIT
    too_big = httpx.post(
        f"{served_app}/v1/audio/transcriptions",
        files={"file": ("sonnets.wav", buffer.getvalue())},
        headers=AUTH,
        timeout=60,
    )
    assert too_big.status_code == 413
    job = submit(served_app, "sonnets.wav", buffer.getvalue(), language="en").json()
    done = wait(served_app, job["id"])
    assert done["status"] == "succeeded"
    text = httpx.get(
        f"{served_app}{JOBS}/{job['id']}/result", params={"response_format": "text"}, headers=AUTH
    )
    # The 16-bit stereo copy decodes a hair differently ("glutton bee" on some CPUs): WER, not phrases.
    assert score([SONNETS.text], [text.text]).wer_normalized < 0.15
    assert len(SONNETS.missing_phrases(text.text)) <= 1


def test_jobs_are_listed_newest_first_and_only_to_their_own_key(served_app: str) -> None:
    first = submit(served_app, "jfk.flac", JFK.path.read_bytes()).json()["id"]
    second = submit(served_app, "german.flac", GERMAN.path.read_bytes()).json()["id"]
    page = httpx.get(f"{served_app}{JOBS}", params={"limit": 1}, headers=AUTH).json()
    assert page["object"] == "list" and [j["id"] for j in page["data"]] == [second] and page["has_more"]
    rest = httpx.get(f"{served_app}{JOBS}", params={"limit": 1, "after": second}, headers=AUTH).json()
    assert [j["id"] for j in rest["data"]] == [first]
    other = {"Authorization": f"Bearer {SECOND_KEY}"}
    assert first not in [j["id"] for j in httpx.get(f"{served_app}{JOBS}", headers=other).json()["data"]]
    hidden = httpx.get(f"{served_app}{JOBS}/{first}", headers=other)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "job_not_found"
    wait(served_app, first)
    wait(served_app, second)


def test_a_file_that_is_not_audio_fails_its_job_with_the_reason(served_app: str) -> None:
    job = submit(served_app, "notes.mp3", b"this is not a recording at all").json()
    done = wait(served_app, job["id"])
    assert done["status"] == "failed" and done["attempts"] == 1
    assert "notes.mp3" in done["error"]["message"]
    result = httpx.get(f"{served_app}{JOBS}/{job['id']}/result", headers=AUTH)
    assert result.status_code == 409 and result.json()["error"]["code"] == "job_failed"


def test_bad_job_requests_get_clear_errors(served_app: str) -> None:
    assert (
        submit(served_app, "jfk.flac", b"x", response_format="docx").json()["error"]["param"]
        == "response_format"
    )
    assert (
        submit(served_app, "jfk.flac", b"x", callback_url="ftp://x").json()["error"]["param"]
        == "callback_url"
    )
    assert submit(served_app, "jfk.flac", b"x", stream="true").json()["error"]["param"] == "stream"
    assert submit(served_app, "jfk.flac", b"x", headers={}).status_code == 401
    missing = httpx.get(f"{served_app}{JOBS}/job_missing", headers=AUTH)
    assert missing.status_code == 404
    bad_page = httpx.get(f"{served_app}{JOBS}", params={"limit": 1000}, headers=AUTH)
    assert bad_page.status_code == 400 and bad_page.json()["error"]["param"] == "limit"


def test_an_uploaded_file_name_is_only_a_label_never_a_path(served_app: str, jobs_dir: Path) -> None:
    hostile = "../../../escaped-" + new_job_id() + ".flac"
    job = submit(served_app, hostile, JFK.path.read_bytes()).json()
    done = wait(served_app, job["id"])
    assert done["status"] == "succeeded" and done["filename"] == hostile
    assert (jobs_dir / "audio" / job["id"]).is_file()  # kept under the job's id
    assert not (jobs_dir / "audio" / hostile).resolve().exists()
    assert list(jobs_dir.parent.parent.rglob("escaped-*")) == []


def test_a_job_can_be_cancelled_until_it_has_finished(served_app: str) -> None:
    long = submit(served_app, "sonnets.flac", SONNETS.path.read_bytes(), language="en").json()
    cancelled = httpx.delete(f"{served_app}{JOBS}/{long['id']}", headers=AUTH)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    time.sleep(2)  # a worker that had started on it stops at its next heartbeat and leaves no result
    job = httpx.get(f"{served_app}{JOBS}/{long['id']}", headers=AUTH).json()
    assert job["status"] == "cancelled"
    result = httpx.get(f"{served_app}{JOBS}/{long['id']}/result", headers=AUTH)
    assert result.status_code == 409 and result.json()["error"]["code"] == "job_cancelled"
    short = submit(served_app, "jfk.flac", JFK.path.read_bytes()).json()
    wait(served_app, short["id"])
    late = httpx.delete(f"{served_app}{JOBS}/{short['id']}", headers=AUTH)
    assert late.status_code == 409 and late.json()["error"]["code"] == "job_finished"


def test_a_job_whose_worker_died_is_taken_over_and_finished(served_app: str, jobs_dir: Path) -> None:
    """Another replica claimed the job and died: once its lease runs out, this app's workers finish it."""
    mine = submit(served_app, "jfk.flac", JFK.path.read_bytes()).json()
    wait(served_app, mine["id"])
    store = open_store(jobs_dir / "jobs.sqlite3")
    try:
        caller = store.get(mine["id"]).caller  # type: ignore[union-attr]
    finally:
        store.close()
    now = time.time()
    orphan = Job(
        id=new_job_id(),
        kind="transcription",
        status="running",
        params={"filename": "jfk.flac"},
        caller=caller,
        callback_url=None,
        audio_path=str(JFK.path),
        audio_s=None,
        done_s=0.0,
        attempts=1,
        max_attempts=3,
        error=None,
        result_path=None,
        created_at=now,
        started_at=now,
        finished_at=None,
        lease_owner="replica-that-died",
        lease_expires_at=now + 2,
        callback_status=None,
    )
    # written in one statement, as that replica's claim left it, so no live worker can claim it first
    with sqlite3.connect(jobs_dir / "jobs.sqlite3") as db:
        db.execute(INSERT, job_to_row(orphan))
    assert httpx.get(f"{served_app}{JOBS}/{orphan.id}", headers=AUTH).json()["status"] == "running"
    done = wait(served_app, orphan.id)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    text = httpx.get(
        f"{served_app}{JOBS}/{orphan.id}/result", params={"response_format": "text"}, headers=AUTH
    )
    assert JFK.missing_phrases(text.text) == []


def test_a_job_survives_its_runner_being_killed_mid_way_and_no_window_is_decoded_twice(
    served_app: str, jobs_dir: Path
) -> None:
    """The job-runner replica running a job dies after some windows: the API stays up, Serve starts a new
    runner, whose worker takes the job over when the lease runs out and decodes only the windows that
    were not finished."""
    import ray
    from ray.util.state import list_actors

    long = np.concatenate([decode_audio(SONNETS.path)] * 4)  # 425 s: more windows than one batch holds
    buffer = io.BytesIO()
    sf.write(buffer, long, 16000, format="FLAC")
    job = submit(served_app, "sonnets-x4.flac", buffer.getvalue(), language="en").json()
    deadline = time.monotonic() + 240
    while True:
        state = httpx.get(f"{served_app}{JOBS}/{job['id']}", headers=AUTH, timeout=30).json()
        assert state["status"] != "succeeded", "the job finished before the replica could be killed"
        if state["audio_seconds_done"] > 0:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    store = open_store(jobs_dir / "jobs.sqlite3")
    try:
        finished_before = set(store.windows(job["id"]))
    finally:
        store.close()
    runner = [
        a for a in list_actors(filters=[("state", "=", "ALIVE")]) if "JobRunner" in (a.class_name or "")
    ]
    assert len(runner) == 1
    ray.kill(ray.get_actor(runner[0].name, namespace="serve"), no_restart=True)
    assert httpx.get(f"{served_app}/readyz", timeout=30).status_code == 200  # the ingress never stopped
    done = wait(served_app, job["id"])
    assert done["status"] == "succeeded" and done["attempts"] >= 2
    text = httpx.get(
        f"{served_app}{JOBS}/{job['id']}/result", params={"response_format": "text"}, headers=AUTH
    )
    assert SONNETS.missing_phrases(text.text) == []
    assert text.text.lower().count("from fairest creatures") == 4  # each copy read once
    assert finished_before  # those windows were kept, not decoded again: the log says where it resumed
    files = [p for p in Path(ray_logs()).rglob("*") if p.suffix in (".err", ".log", ".out")]
    logs = "".join(p.read_text(errors="replace") for p in files)
    assert f"job {job['id']} resumes after" in logs


def test_a_job_survives_the_model_replica_dying_under_it(served_app: str) -> None:
    """The model replica dies while it decodes a job's windows: the lost windows are sent again (to
    the replica Serve starts in its place) and the job finishes, each window read once."""
    import ray
    from ray.util.state import list_actors

    long = np.concatenate([decode_audio(SONNETS.path)] * 2)
    buffer = io.BytesIO()
    sf.write(buffer, long, 16000, format="FLAC")
    job = submit(served_app, "sonnets-x2.flac", buffer.getvalue(), language="en").json()
    wait(served_app, job["id"], until=("running",))
    time.sleep(1.0)  # its windows are on the model replica now
    model = [
        a for a in list_actors(filters=[("state", "=", "ALIVE")]) if "WhisperASR" in (a.class_name or "")
    ]
    assert len(model) == 1
    ray.kill(ray.get_actor(model[0].name, namespace="serve"), no_restart=True)
    done = wait(served_app, job["id"])
    assert done["status"] == "succeeded", done
    text = httpx.get(
        f"{served_app}{JOBS}/{job['id']}/result", params={"response_format": "text"}, headers=AUTH
    )
    assert text.text.lower().count("from fairest creatures") == 2
    served_app_when_ready(served_app)
    files = [p for p in Path(ray_logs()).rglob("*") if p.suffix in (".err", ".log", ".out")]
    logs = "".join(p.read_text(errors="replace") for p in files)
    assert "sending the window again" in logs or done["attempts"] >= 2  # retried in place, or requeued


def test_restarting_the_whole_service_resumes_a_running_job_and_keeps_finished_results(
    served_app: str, served_settings: Any
) -> None:
    """Serve is shut down (ingress, model replicas, job workers) while a job runs, then started again
    on the same store: the finished job's subtitles are still there and the running job ends once."""
    from ray import serve

    from tuned_whisper.server import start, wait_until_ready

    finished = submit(served_app, "jfk.flac", JFK.path.read_bytes(), response_format="srt").json()
    assert wait(served_app, finished["id"])["status"] == "succeeded"
    long = np.concatenate([decode_audio(SONNETS.path)] * 3)
    buffer = io.BytesIO()
    sf.write(buffer, long, 16000, format="FLAC")
    job = submit(served_app, "sonnets-x3.flac", buffer.getvalue(), language="en").json()
    deadline = time.monotonic() + 240
    while (
        httpx.get(f"{served_app}{JOBS}/{job['id']}", headers=AUTH, timeout=30).json()["audio_seconds_done"]
        == 0
    ):
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.2)

    serve.shutdown()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{served_app}/readyz", timeout=5)
    start(served_settings)
    wait_until_ready(f"{served_app}/readyz", timeout_s=180)

    done = wait(served_app, job["id"])
    assert done["status"] == "succeeded" and done["attempts"] >= 2, done
    text = httpx.get(
        f"{served_app}{JOBS}/{job['id']}/result", params={"response_format": "text"}, headers=AUTH
    )
    assert text.text.lower().count("from fairest creatures") == 3
    srt = httpx.get(f"{served_app}{JOBS}/{finished['id']}/result", headers=AUTH, timeout=30)
    assert srt.status_code == 200 and JFK.missing_phrases(srt.text) == []


def served_app_when_ready(url: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the app did not become ready again")


def ray_logs() -> str:
    import ray

    return str(Path(ray._private.worker._global_node.get_session_dir_path()) / "logs")
