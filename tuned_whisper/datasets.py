"""Read speech datasets as (audio file, transcript) pairs, checking them before anything heavy runs.

Two layouts are accepted by :func:`load_utterances`:

* a Hugging Face ``audiofolder`` split directory: audio files plus ``metadata.csv`` or
  ``metadata.jsonl`` with a ``file_name`` column (paths relative to the directory) and a transcript
  column named ``transcription``, ``text`` or ``sentence`` (the first one present wins). Other columns
  are ignored. A directory whose subfolders are splits (``dev/``, ``train/``...) must be named by split.
* a JSONL manifest file (``*.jsonl``): one object per line with ``audio`` (a path relative to the
  manifest, or absolute) and ``text``, and optionally ``id``.

Problems are reported as :class:`DatasetError` naming what to fix; no audio is decoded here.
Rows are returned in file order; a clip listed twice is returned twice (not rejected).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

METADATA_FILES = ("metadata.csv", "metadata.jsonl")
FILE_COLUMN = "file_name"
TRANSCRIPT_COLUMNS = ("transcription", "text", "sentence")
MANIFEST_COLUMNS = ("audio", "text")
MAX_NAMED = 5
"""How many offending rows or files an error message names before summarising the rest."""


class DatasetError(ValueError):
    """The dataset on disk cannot be used as it is; the message says what to fix."""


@dataclass(frozen=True)
class Utterance:
    """One audio clip and its reference transcript."""

    audio_path: Path
    text: str
    id: str
    """The audio path relative to its metadata, without extension, unless a manifest row sets ``id``."""


@dataclass(frozen=True)
class _Row:
    """One metadata record, with its line number for error messages."""

    line: int
    fields: dict[str, object]


@dataclass(frozen=True)
class _Table:
    """A parsed metadata file or manifest."""

    source: Path
    columns: list[str]
    rows: list[_Row]


def load_utterances(path: Path) -> list[Utterance]:
    """Read an audiofolder split directory or a ``.jsonl`` manifest into checked utterances."""
    path = Path(path)
    if path.is_dir():
        utterances = _load_audiofolder(path)
    elif path.is_file() and path.suffix == ".jsonl":
        utterances = _load_manifest(path)
    elif not path.exists():
        raise DatasetError(f"dataset path '{path}' does not exist")
    else:
        raise DatasetError(
            f"'{path}' is neither an audiofolder directory nor a .jsonl manifest; pass a directory "
            f"holding {' or '.join(METADATA_FILES)}, or a manifest file ending in .jsonl"
        )
    _check_transcripts(utterances, path)
    _check_audio_files(utterances, path)
    return utterances


def _load_audiofolder(directory: Path) -> list[Utterance]:
    metadata = _find_metadata(directory)
    table = _read_csv(metadata) if metadata.suffix == ".csv" else _read_jsonl(metadata)
    _check_not_empty(table)
    transcript = _transcript_column(table)
    blank = [str(row.line) for row in table.rows if not _text(row.fields.get(FILE_COLUMN))]
    if blank:
        raise DatasetError(f"{metadata}: rows on lines {_some(blank)} have an empty '{FILE_COLUMN}'")
    return [_audiofolder_utterance(row, directory, transcript) for row in table.rows]


def _audiofolder_utterance(row: _Row, directory: Path, transcript: str) -> Utterance:
    file_name = _text(row.fields[FILE_COLUMN])
    return Utterance(
        audio_path=directory / file_name,
        text=_text(row.fields.get(transcript)),
        id=Path(file_name).with_suffix("").as_posix(),
    )


def _load_manifest(manifest: Path) -> list[Utterance]:
    table = _read_jsonl(manifest)
    _check_not_empty(table)
    missing = [column for column in MANIFEST_COLUMNS if column not in table.columns]
    if missing:
        raise _missing_columns_error(table, " and ".join(f"'{column}'" for column in MANIFEST_COLUMNS))
    return [_manifest_utterance(row, manifest) for row in table.rows]


def _manifest_utterance(row: _Row, manifest: Path) -> Utterance:
    audio = row.fields.get("audio")
    if not isinstance(audio, str) or not audio.strip():
        raise DatasetError(f"{manifest}, line {row.line}: 'audio' must be a file path, got {audio!r}")
    audio = audio.strip()
    return Utterance(
        audio_path=manifest.parent / audio,  # an absolute path replaces the parent
        text=_text(row.fields.get("text")),
        id=_text(row.fields.get("id")) or Path(audio).with_suffix("").as_posix(),
    )


def _find_metadata(directory: Path) -> Path:
    found = [directory / name for name in METADATA_FILES if (directory / name).is_file()]
    if len(found) > 1:
        raise DatasetError(f"'{directory}' holds both {' and '.join(METADATA_FILES)}; keep only one")
    if found:
        return found[0]
    splits = sorted(
        child.name
        for child in directory.iterdir()
        if child.is_dir() and any((child / name).is_file() for name in METADATA_FILES)
    )
    if splits:
        raise DatasetError(
            f"'{directory}' holds the splits {', '.join(splits)}; "
            f"pass one split's directory, e.g. '{directory / splits[0]}'"
        )
    raise DatasetError(
        f"no {' or '.join(METADATA_FILES)} in '{directory}'; an audiofolder needs one with the columns "
        f"'{FILE_COLUMN}' and a transcript ({', '.join(TRANSCRIPT_COLUMNS)})"
    )


def _read_csv(path: Path) -> _Table:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        rows = [
            _Row(line=reader.line_num, fields=dict(zip(header, values, strict=False)))
            for values in reader
            if any(value.strip() for value in values)
        ]
    return _Table(source=path, columns=header, rows=rows)


def _read_jsonl(path: Path) -> _Table:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            rows.append(_Row(line=number, fields=json_object(line, path, number)))
    columns = list(dict.fromkeys(column for row in rows for column in row.fields))
    return _Table(source=path, columns=columns, rows=rows)


def json_object(line: str, path: Path, number: int) -> dict[str, object]:
    """Line `number` of a JSONL file as an object; a DatasetError names the file and line otherwise."""
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}, line {number} is not valid JSON: {error.msg}") from error
    if not isinstance(fields, dict):
        raise DatasetError(f"{path}, line {number} must be a JSON object, got {type(fields).__name__}")
    return fields


def _transcript_column(table: _Table) -> str:
    needed = f"'{FILE_COLUMN}' and one of " + ", ".join(f"'{name}'" for name in TRANSCRIPT_COLUMNS)
    if FILE_COLUMN not in table.columns:
        raise _missing_columns_error(table, needed)
    for name in TRANSCRIPT_COLUMNS:
        if name in table.columns:
            return name
    raise _missing_columns_error(table, needed)


def _missing_columns_error(table: _Table, needed: str) -> DatasetError:
    found = ", ".join(f"'{column}'" for column in table.columns) or "none"
    return DatasetError(f"{table.source} needs the columns {needed}; found: {found}")


def _check_not_empty(table: _Table) -> None:
    if not table.rows:
        raise DatasetError(f"{table.source} lists no utterances; add at least one row")


def _check_transcripts(utterances: list[Utterance], source: Path) -> None:
    empty = [u.id for u in utterances if not u.text]
    if empty:
        raise DatasetError(
            f"{source}: {_some(empty)} have an empty transcript; fill them in or drop those rows"
        )


def _check_audio_files(utterances: list[Utterance], source: Path) -> None:
    missing = [str(u.audio_path) for u in utterances if not u.audio_path.is_file()]
    if missing:
        raise DatasetError(f"{source}: audio files not found: {_some(missing)}")


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _some(items: list[str]) -> str:
    named = ", ".join(f"'{item}'" for item in items[:MAX_NAMED])
    rest = len(items) - MAX_NAMED
    return f"{named} and {rest} more ({len(items)} in all)" if rest > 0 else named
