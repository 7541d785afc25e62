"""LoRA fine-tuning of a Whisper checkpoint on your own audio and transcripts, scored before and after.

    python finetune/train.py finetune/configs/ivr-en.json          # a whole run in one JSON file
    python finetune/train.py --train data/train --dev data/dev --output_dir adapters/mine --num_epochs 5

By default the encoder is frozen and only the decoder's attention gets LoRA: the encoder's outputs are
computed once per clip and cached, which makes a CPU run of a few hundred clips take minutes. House style
(numerals, symbols, product names) lives in the decoder. `--train_encoder` adds LoRA to the encoder too
(for a new acoustic channel; slower, meant for a GPU). The best adapter by dev WER is kept.
`--ray_workers N` runs the same loop data-parallel on N Ray Train workers (`finetune/distributed.py`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `finetune` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from finetune.data import DataArguments
from finetune.distributed import ScaleArguments, run_on_ray
from finetune.loop import LoraArguments, ModelArguments, TrainArguments, format_summary, run

Arguments = tuple[ModelArguments, DataArguments, LoraArguments, TrainArguments, ScaleArguments]


def parse(argv: list[str]) -> Arguments:
    """Flags, or one JSON file holding them all (as `HfArgumentParser` reads it)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser((ModelArguments, DataArguments, LoraArguments, TrainArguments, ScaleArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=argv[0], allow_extra_keys=False)  # type: ignore[return-value]
    return parser.parse_args_into_dataclasses(args=argv)  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    from tuned_whisper.datasets import DatasetError

    model_args, data_args, lora_args, train_args, scale = parse(sys.argv[1:] if argv is None else argv)
    try:
        if scale.ray_workers > 0:
            summary = run_on_ray(model_args, data_args, lora_args, train_args, scale)
            print(format_summary(summary))
        else:
            summary = run(model_args, data_args, lora_args, train_args)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"adapter": summary["adapter"], "best": summary["best"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
