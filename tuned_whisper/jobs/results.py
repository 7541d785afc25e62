"""A job's results as JSON: its transcript on disk (renders again into any response format), and its
finished windows in the store."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tuned_whisper.engine.windows import Decoded
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


def decoded_to_json(decoded: Decoded) -> dict[str, Any]:
    """One finished window as the store keeps it, so a job taken over resumes after it."""
    times = decoded.token_timestamps
    return {
        **{f.name: getattr(decoded, f.name) for f in dataclasses.fields(decoded)},
        "tokens": [int(t) for t in decoded.tokens],
        "token_timestamps": None if times is None else [float(t) for t in times],
    }


def decoded_from_json(data: dict[str, Any]) -> Decoded:
    times = data.get("token_timestamps")
    return Decoded(
        **{
            **data,
            "tokens": np.asarray(data["tokens"], dtype=np.int64),
            "token_timestamps": None if times is None else np.asarray(times, dtype=np.float32),
        }
    )
