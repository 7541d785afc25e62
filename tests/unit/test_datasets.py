"""Loading audiofolder splits and JSONL manifests, and the errors that say how to fix broken ones."""

import json
from pathlib import Path

import pytest

from tests.conftest import IVR_EN
from tuned_whisper.cli import main
from tuned_whisper.datasets import DatasetError, Utterance, load_utterances


def _audiofolder(root: Path, metadata: str, clips: list[str], name: str = "metadata.csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(metadata, encoding="utf-8")
    for clip in clips:
        (root / clip).parent.mkdir(parents=True, exist_ok=True)
        (root / clip).write_bytes(b"not decoded here")
    return root


def _manifest(path: Path, records: list[dict[str, object]], clips: list[str]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    for clip in clips:
        (path.parent / clip).write_bytes(b"not decoded here")
    return path


@pytest.mark.parametrize(("split", "count"), [("dev", 46), ("train", 383)])
def test_reads_the_ivr_en_splits(split: str, count: int) -> None:
    utterances = load_utterances(IVR_EN / split)

    assert len(utterances) == count
    assert all(u.audio_path.is_file() and u.text for u in utterances)


def test_ivr_en_dev_ids_are_unique() -> None:
    # Not asserted for train: its metadata.csv lists at.flac and sorry.flac twice (one file each on disk).
    assert len({u.id for u in load_utterances(IVR_EN / "dev")}) == 46


def test_ivr_en_rows_keep_their_transcripts() -> None:
    by_id = {u.id: u for u in load_utterances(IVR_EN / "dev")}

    assert by_id["agent-pass"] == Utterance(
        audio_path=IVR_EN / "dev" / "agent-pass.flac",
        text="Please enter your password followed by the pound key.",
        id="agent-pass",
    )


def test_a_directory_of_splits_asks_for_one_split() -> None:
    with pytest.raises(DatasetError, match=r"splits dev, train; pass one split's directory"):
        load_utterances(IVR_EN)


@pytest.mark.parametrize("column", ["transcription", "text", "sentence"])
def test_accepts_each_transcript_column_name(tmp_path: Path, column: str) -> None:
    folder = _audiofolder(tmp_path, f"file_name,{column}\na.wav,Hello there\n", ["a.wav"])

    assert load_utterances(folder) == [Utterance(folder / "a.wav", "Hello there", "a")]


def test_reads_metadata_jsonl_with_nested_files(tmp_path: Path) -> None:
    metadata = json.dumps({"file_name": "calls/b.flac", "transcription": " Press 1. "}) + "\n"
    folder = _audiofolder(tmp_path, metadata, ["calls/b.flac"], name="metadata.jsonl")

    assert load_utterances(folder) == [Utterance(folder / "calls" / "b.flac", "Press 1.", "calls/b")]


def test_reads_a_manifest_relative_to_its_own_folder(tmp_path: Path) -> None:
    records = [{"audio": "a.wav", "text": "one"}, {"audio": "b.wav", "text": "two", "id": "second"}]
    manifest = _manifest(tmp_path / "eval.jsonl", records, ["a.wav", "b.wav"])

    assert load_utterances(manifest) == [
        Utterance(tmp_path / "a.wav", "one", "a"),
        Utterance(tmp_path / "b.wav", "two", "second"),
    ]


def test_missing_metadata_names_the_files_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no metadata.csv or metadata.jsonl in"):
        load_utterances(tmp_path)


def test_missing_transcript_column_names_found_and_needed_columns(tmp_path: Path) -> None:
    folder = _audiofolder(tmp_path, "file_name,label\na.wav,x\n", ["a.wav"])

    with pytest.raises(DatasetError) as error:
        load_utterances(folder)

    assert "'file_name' and one of 'transcription', 'text', 'sentence'" in str(error.value)
    assert "found: 'file_name', 'label'" in str(error.value)


def test_missing_manifest_column_is_named(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.jsonl", [{"path": "a.wav", "text": "hi"}], ["a.wav"])

    with pytest.raises(DatasetError, match=r"needs the columns 'audio' and 'text'; found: 'path', 'text'"):
        load_utterances(manifest)


def test_missing_clips_are_named_a_few_at_a_time(tmp_path: Path) -> None:
    rows = "".join(f"clip{i}.wav,words\n" for i in range(8))
    folder = _audiofolder(tmp_path, "file_name,transcription\n" + rows, ["clip0.wav"])

    with pytest.raises(DatasetError, match=r"audio files not found: .*clip1.wav.* and 2 more \(7 in all\)"):
        load_utterances(folder)


def test_empty_transcripts_are_named(tmp_path: Path) -> None:
    metadata = 'file_name,transcription\na.wav,fine\nb.wav,"  "\nc.wav,\n'
    folder = _audiofolder(tmp_path, metadata, ["a.wav", "b.wav", "c.wav"])

    with pytest.raises(DatasetError, match=r"'b', 'c' have an empty transcript"):
        load_utterances(folder)


def test_rows_without_a_file_name_are_located(tmp_path: Path) -> None:
    folder = _audiofolder(tmp_path, "file_name,transcription\na.wav,fine\n,orphan words\n", ["a.wav"])

    with pytest.raises(DatasetError, match=r"rows on lines '3' have an empty 'file_name'"):
        load_utterances(folder)


def test_header_only_metadata_is_an_empty_dataset(tmp_path: Path) -> None:
    folder = _audiofolder(tmp_path, "file_name,transcription\n", [])

    with pytest.raises(DatasetError, match="lists no utterances"):
        load_utterances(folder)


def test_empty_manifest_is_an_empty_dataset(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.jsonl", [], [])

    with pytest.raises(DatasetError, match="lists no utterances"):
        load_utterances(manifest)


def test_invalid_manifest_line_is_located(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "a.wav", "text": "hi"}\n{"audio": \n', encoding="utf-8")

    with pytest.raises(DatasetError, match=r"line 2 is not valid JSON"):
        load_utterances(manifest)


def test_other_files_and_missing_paths_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "clips.csv").write_text("file_name,transcription\n", encoding="utf-8")

    with pytest.raises(DatasetError, match=r"neither an audiofolder directory nor a \.jsonl manifest"):
        load_utterances(tmp_path / "clips.csv")
    with pytest.raises(DatasetError, match="does not exist"):
        load_utterances(tmp_path / "nowhere")


def test_eval_on_a_broken_dataset_says_what_to_fix_and_exits_with_the_usage_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _audiofolder(tmp_path, "file_name,transcription\na.wav,hello\n", [])

    # The dataset is checked before the model is loaded, so this needs no checkpoint; 2 is a usage error.
    assert main(["eval", str(folder)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "audio files not found" in error
    assert str(folder / "a.wav") in error
