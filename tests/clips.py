"""The real-speech clips committed under tests/data/, with what tests may assert about them.

``from tests.clips import JFK, SONNETS, GERMAN`` gives a :class:`Clip` each; ``tests/data/clips.json``
holds their metadata and ``tests/data/README.md`` their provenance.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
CLIPS_JSON = DATA_DIR / "clips.json"


@dataclass(frozen=True)
class Clip:
    """One committed clip: where it is, what is said in it, and how long it lasts."""

    name: str
    path: Path
    text: str
    """Full reference transcript."""
    duration: float
    """Seconds, as ffmpeg decodes it to 16 kHz mono."""
    language: str
    """ISO 639-1 code Whisper should detect."""
    key_phrases: tuple[str, ...]
    """Phrases a good transcript contains; compare with :meth:`missing_phrases`."""

    def missing_phrases(self, transcript: str) -> list[str]:
        """Key phrases absent from ``transcript``, ignoring case, punctuation and spacing."""
        heard = _simplify(transcript)
        return [phrase for phrase in self.key_phrases if _simplify(phrase) not in heard]


def _simplify(text: str) -> str:
    words = re.sub(r"[^\w\s']", " ", text.lower()).split()
    return f" {' '.join(words)} "


def _load(path: Path) -> dict[str, Clip]:
    records = json.loads(path.read_text(encoding="utf-8"))["clips"]
    return {
        record["name"]: Clip(
            name=record["name"],
            path=path.parent / record["file"],
            text=record["text"],
            duration=record["duration_s"],
            language=record["language"],
            key_phrases=tuple(record["key_phrases"]),
        )
        for record in records
    }


CLIPS = _load(CLIPS_JSON)
JFK = CLIPS["jfk"]
"""11 s, English: "ask not what your country can do for you"."""
SONNETS = CLIPS["sonnets"]
"""106 s, English (LibriVox): Shakespeare's Sonnets I and II (longer than Whisper's 30 s window)."""
GERMAN = CLIPS["german_tts"]
"""8.5 s, German (espeak-ng): for language detection."""
