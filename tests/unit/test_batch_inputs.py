"""What `tuned-whisper batch` will transcribe and where each output goes, before Ray or the model start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuned_whisper.batch import (
    BatchConfig,
    BatchUsageError,
    Entry,
    FileResult,
    discover,
    is_done,
    parse_formats,
    read_report,
    write_report,
)
from tuned_whisper.cli import main


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not decoded here")


def _outputs(entries: list[Entry], root: Path) -> list[str]:
    return [str(p.relative_to(root)) for e in entries for p in e.outputs(root, ("srt",))]


def test_a_folder_is_searched_recursively_and_keeps_its_layout_under_the_output_dir(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _touch(calls / "a.flac", calls / "monday" / "a.flac", calls / "monday" / "b.MP4", calls / "notes.txt")
    out = tmp_path / "out"

    entries = discover([calls])

    assert [e.path for e in entries] == [
        calls / "a.flac",
        calls / "monday" / "a.flac",
        calls / "monday" / "b.MP4",
    ]
    assert _outputs(entries, out) == ["a.srt", "monday/a.srt", "monday/b.srt"]


def test_same_named_files_side_by_side_or_listed_twice_never_share_an_output(tmp_path: Path) -> None:
    _touch(tmp_path / "x" / "talk.wav", tmp_path / "x" / "talk.mp3", tmp_path / "y" / "talk.wav")
    wav, mp3, other = tmp_path / "x" / "talk.wav", tmp_path / "x" / "talk.mp3", tmp_path / "y" / "talk.wav"

    entries = discover([wav, mp3, other, wav])

    assert [e.path for e in entries] == [wav, mp3, other]
    assert _outputs(entries, tmp_path) == ["talk.wav.srt", "talk.mp3.srt", "talk.wav-2.srt"]


def test_a_jsonl_manifest_lists_files_relative_to_its_folder_with_a_language_each(tmp_path: Path) -> None:
    _touch(tmp_path / "audio" / "one.flac", tmp_path / "two.wav")
    manifest = tmp_path / "list.jsonl"
    rows = [{"file": "audio/one.flac", "language": "German"}, {"path": "two.wav"}, {"file": "gone.wav"}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")

    entries = discover([manifest])

    assert [(e.path, e.language) for e in entries] == [
        (tmp_path / "audio" / "one.flac", "de"),
        (tmp_path / "two.wav", None),
        (tmp_path / "gone.wav", None),  # a listed file that is missing fails in the report, not here
    ]
    assert _outputs(entries, tmp_path / "out") == ["audio/one.srt", "two.srt", "gone.srt"]


def test_a_csv_manifest_works_like_a_jsonl_one(tmp_path: Path) -> None:
    manifest = tmp_path / "list.csv"
    manifest.write_text("file,language\nclips/a.wav,en\n../elsewhere/b.wav,\n", encoding="utf-8")

    entries = discover([manifest])

    assert [(e.path, e.language) for e in entries] == [
        (tmp_path / "clips" / "a.wav", "en"),
        (tmp_path / ".." / "elsewhere" / "b.wav", None),
    ]
    assert _outputs(entries, tmp_path / "out") == ["clips/a.srt", "b.srt"]  # never outside the output dir


@pytest.mark.parametrize(
    ("manifest", "text", "says"),
    [
        ("list.jsonl", '{"file": "a.wav"}\n{"name": "b.wav"}\n', "list.jsonl:2: no 'file' or 'path'"),
        ("list.jsonl", "a.wav\n", "list.jsonl, line 1 is not valid JSON"),
        ("list.csv", "file,language\na.wav,klingon\n", "list.csv:2: unknown language 'klingon'"),
    ],
)
def test_a_broken_manifest_says_which_line_to_fix(
    tmp_path: Path, manifest: str, text: str, says: str
) -> None:
    (tmp_path / manifest).write_text(text, encoding="utf-8")

    with pytest.raises(BatchUsageError, match=says):
        discover([tmp_path / manifest])


def test_inputs_that_hold_no_audio_or_do_not_exist_are_usage_errors(tmp_path: Path) -> None:
    _touch(tmp_path / "empty" / "readme.txt")

    with pytest.raises(BatchUsageError, match="no audio or video files found"):
        discover([tmp_path / "empty"])
    with pytest.raises(BatchUsageError, match="typo' does not exist"):
        discover([tmp_path / "typo"])


def test_formats_are_a_comma_list_of_known_writers() -> None:
    assert parse_formats("srt, json,srt") == ("srt", "json")
    with pytest.raises(BatchUsageError, match="unknown output format 'docx'"):
        parse_formats("srt,docx")


def test_a_file_is_done_only_when_every_requested_output_exists(tmp_path: Path) -> None:
    entry = discover([_made(tmp_path / "in" / "a.wav")])[0]
    config = BatchConfig(tmp_path / "out", ("srt", "json"))
    assert not is_done(entry, config)

    _touch(tmp_path / "out" / "a.srt")
    assert not is_done(entry, config)

    _touch(tmp_path / "out" / "a.json")
    assert is_done(entry, config)


def test_the_report_round_trips_with_one_row_per_file(tmp_path: Path) -> None:
    results = [
        FileResult("a.wav", "done", 11.0, "", 1.25, "en", ("out/a.srt", "out/a.json")),
        FileResult("b.wav", "failed", None, "ffmpeg could not decode 'b.wav', said: x, y"),
    ]
    write_report(tmp_path / "report.csv", results)

    rows = read_report(tmp_path / "report.csv")

    assert rows["a.wav"] == {
        "file": "a.wav",
        "duration_s": "11.000",
        "status": "done",
        "error": "",
        "seconds": "1.250",
        "language": "en",
        "outputs": "out/a.srt;out/a.json",
    }
    assert rows["b.wav"]["status"] == "failed" and rows["b.wav"]["error"].endswith("said: x, y")


def test_the_command_refuses_bad_usage_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = _made(tmp_path / "a.wav")

    assert main(["batch", str(clip), "-o", str(tmp_path / "out"), "--format", "srt,pdf"]) == 2
    assert "unknown output format 'pdf'" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _made(path: Path) -> Path:
    _touch(path)
    return path
