"""`tuned-whisper batch` as a user runs it: a folder of recordings (and one broken file) through a local Ray,
subtitles and a report out, a rerun that picks up where the first stopped, and a manifest."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import srt

from tests.clips import GERMAN, JFK

pytestmark = pytest.mark.slow

TW = Path(sys.executable).parent / "tuned-whisper"
ENGINE = ("--workers", "1", "--cpus-per-worker", "1", "--backend", "ctranslate2", "--device", "cpu")


def run_batch(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    result = subprocess.run([str(TW), "batch", *args, *ENGINE], capture_output=True, text=True, timeout=300)
    return result, time.perf_counter() - started


def read_report(out: Path) -> dict[str, dict[str, str]]:
    with (out / "report.csv").open(encoding="utf-8", newline="") as handle:
        return {Path(row["file"]).relative_to(out.parent).as_posix(): row for row in csv.DictReader(handle)}


def spoken(subtitles: Path) -> str:
    return " ".join(c.content for c in srt.parse(subtitles.read_text(encoding="utf-8"))).replace("\n", " ")


def test_a_folder_with_a_broken_file_is_transcribed_and_a_rerun_only_retries_what_failed(
    tmp_path: Path, checkpoint_dir: Path
) -> None:
    recordings, out = tmp_path / "recordings", tmp_path / "out"
    (recordings / "tuesday").mkdir(parents=True)
    shutil.copy(JFK.path, recordings / "jfk.flac")
    shutil.copy(GERMAN.path, recordings / "german_tts.flac")
    shutil.copy(GERMAN.path, recordings / "tuesday" / "jfk.flac")  # same name, other folder, other speech
    (recordings / "notes.wav").write_text("meeting notes, not audio")

    first, first_s = run_batch(str(recordings), "-o", str(out), "--format", "srt,json")

    assert first.returncode == 1, first.stderr
    assert "notes.wav" in first.stderr and "1 of 4 files failed" in first.stderr
    assert JFK.missing_phrases(spoken(out / "jfk.srt")) == []
    assert JFK.missing_phrases(json.loads((out / "jfk.json").read_text())["text"]) == []
    assert GERMAN.missing_phrases(spoken(out / "german_tts.srt")) == []
    assert GERMAN.missing_phrases(json.loads((out / "tuesday" / "jfk.json").read_text())["text"]) == []
    report = read_report(out)
    assert {name: row["status"] for name, row in report.items()} == {
        "recordings/german_tts.flac": "done",
        "recordings/jfk.flac": "done",
        "recordings/notes.wav": "failed",
        "recordings/tuesday/jfk.flac": "done",
    }
    broken = report["recordings/notes.wav"]
    assert "could not decode" in broken["error"] and "notes.wav" in broken["error"]
    assert broken["outputs"] == ""
    done = report["recordings/tuesday/jfk.flac"]
    assert (done["language"], float(done["duration_s"])) == ("de", pytest.approx(GERMAN.duration, abs=0.05))
    assert float(done["seconds"]) > 0
    assert done["outputs"].split(";") == [str(out / "tuesday" / "jfk.srt"), str(out / "tuesday" / "jfk.json")]

    again, again_s = run_batch(str(recordings), "-o", str(out), "--format", "srt,json")

    assert again.returncode == 1, again.stderr
    statuses = {name: row["status"] for name, row in read_report(out).items()}
    assert statuses.pop("recordings/notes.wav") == "failed"
    assert set(statuses.values()) == {"skipped"}
    assert read_report(out)["recordings/jfk.flac"]["language"] == "en"  # kept from the first run
    assert again_s < first_s


def test_a_manifest_names_the_files_and_their_languages(tmp_path: Path, checkpoint_dir: Path) -> None:
    (tmp_path / "clips").mkdir()
    shutil.copy(JFK.path, tmp_path / "clips" / "speech.flac")
    shutil.copy(GERMAN.path, tmp_path / "anruf.flac")
    manifest = tmp_path / "batch.jsonl"
    rows = [{"file": "clips/speech.flac", "language": "en"}, {"path": "anruf.flac", "language": "German"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"

    result, _ = run_batch(str(manifest), "-o", str(out), "--format", "txt")

    assert result.returncode == 0, result.stderr
    assert JFK.missing_phrases((out / "clips" / "speech.txt").read_text()) == []
    assert GERMAN.missing_phrases((out / "anruf.txt").read_text()) == []
    report = read_report(out)
    assert [(row["status"], row["language"]) for row in report.values()] == [("done", "en"), ("done", "de")]
