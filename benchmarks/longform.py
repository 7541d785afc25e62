"""Long-form accuracy: how windows are cut and stitched, on long recordings with known transcripts.

Calls are built from the ivr-en prompts read back to back (half a second between prompts, about 2.5
minutes each), plus the sonnets reading. Each is transcribed in one process by our CTranslate2 int8
engine with overlapping strides (the default) and with windows cut at pauses, and by faster-whisper
int8 (its own sequential long-form loop) on the same weights. Prints normalised WER, windows decoded
and seconds for each.

    python benchmarks/longform.py [--calls 4]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (
    FASTER_WHISPER_LINE,
    IVR_DEV,
    REPO,
    THREADS,
    FasterWhisperRunner,
    ct2_model_dir,
    fixture_clips,
    machine_lines,
    normalised_wer,
)

TRAIN = REPO / "data" / "ivr-en" / "train"
CALL_S = 150.0
PAUSE_S = 0.5


def calls(count: int) -> list[tuple[str, object, str]]:
    """(name, samples, reference) for `count` calls of back-to-back prompts (dev first, then train)."""
    import numpy as np

    from tuned_whisper.audio import SAMPLE_RATE, decode_audio

    rows = []
    for folder in (IVR_DEV, TRAIN):
        with (folder / "metadata.csv").open(encoding="utf-8", newline="") as handle:
            rows += [(folder / r["file_name"], r["transcription"]) for r in csv.DictReader(handle)]
    pause = np.zeros(round(PAUSE_S * SAMPLE_RATE), dtype=np.float32)
    built: list[tuple[str, object, str]] = []
    parts: list[np.ndarray] = []
    texts: list[str] = []
    for path, text in rows:
        parts += [decode_audio(path), pause]
        texts.append(text)
        if sum(len(p) for p in parts) >= CALL_S * SAMPLE_RATE:
            built.append((f"call {len(built) + 1}", np.concatenate(parts), " ".join(texts)))
            parts, texts = [], []
            if len(built) == count:
                break
    sonnets = fixture_clips()["sonnets"]
    built.append(("sonnets", decode_audio(sonnets.path), sonnets.reference))
    return built


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4, help="calls of ivr prompts to build (default 4)")
    args = parser.parse_args(argv)

    from tuned_whisper.config import Settings
    from tuned_whisper.engine import load_decoder
    from tuned_whisper.engine.local import Engine
    from tuned_whisper.types import TranscribeOptions

    recordings = calls(args.calls)
    settings = Settings()
    engine = settings.engine.model_copy(update={"backend": "ctranslate2", "num_threads": THREADS})
    decoder = load_decoder(settings.model_copy(update={"engine": engine}))
    options = TranscribeOptions(language="en")
    rows: dict[str, list[str]] = {name: [] for name, _, _ in recordings}
    totals: dict[str, tuple[list[str], list[str], float, int]] = {}

    def measure(label: str, transcribe: Callable[[Any], str], windows: Callable[[Any], int] | None) -> None:
        """Each recording through `transcribe`: its cell per recording, and the label's totals."""
        refs, hyps, seconds, count = [], [], 0.0, 0
        for name, audio, reference in recordings:
            started = time.perf_counter()
            text = transcribe(audio)
            took = time.perf_counter() - started
            shown = f"{normalised_wer([reference], [text]):.1%}"
            if windows is not None:
                decoded = windows(audio)
                count += decoded
                shown += f" / {decoded}"
            rows[name].append(f"{shown} / {took:.1f} s")
            refs.append(reference)
            hyps.append(text)
            seconds += took
        totals[label] = (refs, hyps, seconds, count)

    for label, cut in (("ours, strides", False), ("ours, cut at pauses", True)):
        transcriber = Engine(decoder, engine.model_copy(update={"cut_at_pauses": cut}))
        measure(
            label,
            lambda audio, t=transcriber: t.transcribe(audio, options).text,
            lambda audio, t=transcriber: len(t.longform.windows(audio)),
        )
    with ct2_model_dir() as model_dir:
        measure("faster-whisper int8", FasterWhisperRunner(model_dir).transcribe, None)

    duration = sum(len(audio) for _, audio, _ in recordings) / 16000  # type: ignore[arg-type]
    print("\n".join(machine_lines()))
    print(
        f"\nfaster-whisper: {FASTER_WHISPER_LINE}. {len(recordings)} recordings, {duration:.0f} s of audio.\n"
    )
    labels = list(totals)
    print("| recording | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    overall = []
    for _label, (refs, hyps, seconds, windows) in totals.items():
        shown = f"{normalised_wer(refs, hyps):.1%}"
        overall.append(
            f"**{shown}** / {windows} / {seconds:.1f} s" if windows else f"**{shown}** / {seconds:.1f} s"
        )
    print("| all (corpus WER) | " + " | ".join(overall) + " |")
    print("\nCells: normalised WER / windows decoded (ours) / seconds in one process.")


if __name__ == "__main__":
    main()
