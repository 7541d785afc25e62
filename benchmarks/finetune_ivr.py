"""Fine-tune the default checkpoint on ivr-en train (CPU) and print the before/after table.

    .venv/bin/python benchmarks/finetune_ivr.py [--config finetune/configs/ivr-en.json] [--output DIR]

Scores ivr-en dev (the domain) and general English speech (the committed JFK and LibriVox sonnets clips,
which must not get worse), raw and normalised, with the base checkpoint and with the adapter merged in;
prints dev WER after each epoch, the training time and peak memory from the run's summary. The adapter
(with its training_summary.json) and the merged checkpoint stay in DIR (default outputs/finetune-ivr).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finetune.merge import merge  # noqa: E402
from finetune.train import main as train  # noqa: E402
from tests.clips import JFK, SONNETS  # noqa: E402
from tuned_whisper.audio import decode_audio  # noqa: E402
from tuned_whisper.config import EngineSettings, Settings  # noqa: E402
from tuned_whisper.datasets import load_utterances  # noqa: E402
from tuned_whisper.engine import load_transcriber  # noqa: E402
from tuned_whisper.evaluation import ErrorRates, score  # noqa: E402
from tuned_whisper.types import TranscribeOptions  # noqa: E402

DEV = ROOT / "data" / "ivr-en" / "dev"


def rates_on(checkpoint: Path, pairs: list[tuple[Path, str]]) -> ErrorRates:
    engine = load_transcriber(
        Settings(
            checkpoint=checkpoint, engine=EngineSettings(device="cpu", batch_size=8, backend="transformers")
        )
    )
    options = TranscribeOptions(language="en")
    requests = [(decode_audio(path), options) for path, _ in pairs]
    hypotheses = [t.text for t in engine.transcribe_many(requests)]
    return score([text for _, text in pairs], hypotheses)


def row(name: str, r: ErrorRates) -> str:
    return (
        f"| {name} | {100 * r.wer:.2f} % | {100 * r.wer_normalized:.2f} % | {100 * r.cer:.2f} % "
        f"| {100 * r.cer_normalized:.2f} % |"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "finetune" / "configs" / "ivr-en.json"))
    parser.add_argument("--output", type=Path, default=ROOT / "outputs" / "finetune-ivr")
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    output: Path = args.output.resolve()
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    config["train"] = str((ROOT / config["train"]).resolve())
    config["dev"] = str((ROOT / config["dev"]).resolve())
    config["output_dir"] = str(output / "adapter")
    run_config = output / "config.json"
    run_config.write_text(json.dumps(config, indent=2))
    started = time.monotonic()
    assert train([str(run_config)]) == 0
    wall = time.monotonic() - started
    summary = json.loads((Path(config["output_dir"]) / "training_summary.json").read_text())
    merged = output / "checkpoint"
    merge(Path(config["output_dir"]), merged)
    dev = [(u.audio_path, u.text) for u in load_utterances(DEV)]
    general = [(JFK.path, JFK.text), (SONNETS.path, SONNETS.text)]
    base = ROOT / "checkpoint"
    table = [
        "| model / set | WER | WER normalised | CER | CER normalised |",
        "|---|---|---|---|---|",
        row("base, ivr-en dev", rates_on(base, dev)),
        row("fine-tuned, ivr-en dev", rates_on(merged, dev)),
        row("base, general English", rates_on(base, general)),
        row("fine-tuned, general English", rates_on(merged, general)),
    ]
    print("\n".join(table))
    print("\ndev WER during training (greedy, no timestamps; epoch 0 = before):")
    for e in summary["evaluations"]:
        raw, normalised = 100 * e["wer"], 100 * e["wer_normalized"]
        print(f"  epoch {e['epoch']}: {raw:.2f} % raw, {normalised:.2f} % normalised")
    print(
        f"\ntraining run (prep, encoder cache, {config['num_epochs']} epochs, evals): {wall:.0f} s wall, "
        f"peak RSS {summary['peak_rss_mb']:.0f} MB, best epoch {summary['best']['epoch']}, "
        f"{summary['data']['train_clips']} train clips"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
