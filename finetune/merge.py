"""Merge a LoRA adapter into its base checkpoint: a new full checkpoint the server, CLI and Dockerfile take.

    python finetune/merge.py --adapter adapters/ivr-en --output checkpoint-ivr-en [--base checkpoint]

The output gets the processor, the generation config, `provenance.json` (kind "merged", with the base's
provenance and the adapter's metrics) and a model card (README.md) with data, settings and before/after.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tuned_whisper` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuned_whisper.adapters import AdapterError, load_merged, read_summary
from tuned_whisper.checkpoint import PROVENANCE_FILE, Provenance, read_provenance
from tuned_whisper.config import PROJECT_ROOT


def model_card(summary: dict, base: str) -> str:
    """A short Markdown model card from the training summary."""
    rows = [("before", summary["before"]), (f"after (epoch {summary['best']['epoch']})", summary["best"])]
    table = "\n".join(
        f"| {name} | {100 * r['wer']:.2f} % | {100 * r['wer_normalized']:.2f} % | {100 * r['cer']:.2f} % |"
        for name, r in rows
    )
    return f"""# Fine-tuned Whisper (tuned-whisper)

Base checkpoint: `{base}`. LoRA adapter merged into the weights by `finetune/merge.py`.

## Data
```json
{json.dumps(summary["data"], indent=2)}
```

## Hyperparameters
```json
{json.dumps({"lora": summary["lora"], "training": summary["training"]}, indent=2)}
```

## Dev set, before and after

| model | WER | WER normalised | CER |
|---|---|---|---|
{table}

Training took {summary["train_seconds"]:.0f} s (peak RSS {summary["peak_rss_mb"]:.0f} MB).
"""


def merge(adapter: Path, output: Path, base: str | None = None) -> Provenance:
    import torch
    from transformers import WhisperProcessor

    summary = read_summary(adapter)
    if summary is None:
        raise AdapterError(f"'{adapter}' has no training_summary.json; train it with finetune/train.py")
    base = base or summary["base_checkpoint"]
    model = load_merged(base, adapter, torch.float32, "cpu")
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    WhisperProcessor.from_pretrained(base).save_pretrained(output)
    base_provenance = read_provenance(Path(base))
    provenance = Provenance(
        source=str(adapter),
        kind="merged",
        model=f"{base_provenance.model if base_provenance else base} + LoRA",
        extra={
            "base": base_provenance.to_dict() if base_provenance else base,
            "metrics": summary["best"],
            "before": summary["before"],
            "data": summary["data"],
        },
    )
    (output / PROVENANCE_FILE).write_text(json.dumps(provenance.to_dict(), indent=2) + "\n", encoding="utf-8")
    (output / "README.md").write_text(model_card(summary, base), encoding="utf-8")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True, help="new checkpoint directory")
    parser.add_argument(
        "--base", help=f"base checkpoint (default: the one it was trained on, {PROJECT_ROOT})"
    )
    args = parser.parse_args(argv)
    try:
        provenance = merge(args.adapter, args.output, args.base)
    except AdapterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"merged {args.adapter} into {args.output} ({provenance.model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
