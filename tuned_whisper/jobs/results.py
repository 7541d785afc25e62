"""A finished job's transcript on disk: JSON that renders again into any response format."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from tuned_whisper.types import Segment, Transcript, Word


def save_transcript(transcript: Transcript, path: Path) -> None:
    """Write atomically: a reader never sees half a result, even if this process dies mid-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_text(json.dumps(dataclasses.asdict(transcript), ensure_ascii=False), encoding="utf-8")
    os.replace(partial, path)


def load_transcript(path: Path) -> Transcript:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    segments = tuple(
        Segment(
            **{
                **s,
                "words": tuple(Word(**w) for w in s["words"]),
                "tokens": tuple(s["tokens"]),
            }
        )
        for s in data.pop("segments")
    )
    return Transcript(**data, segments=segments)
