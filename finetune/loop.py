"""The loop behind `finetune/train.py`: LoRA via PEFT, a plain PyTorch loop, dev WER/CER per epoch."""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from finetune.data import Collator, DataArguments, Example, load_splits, prepare
from tuned_whisper.config import PROJECT_ROOT
from tuned_whisper.evaluation import ErrorRates, score

logger = logging.getLogger("finetune")
SUMMARY_FILE = "training_summary.json"
DECODER_ATTENTION = r"model\.decoder\.layers\.\d+\.(self_attn|encoder_attn)\.({})"


@dataclass
class ModelArguments:
    checkpoint: str = field(default=str(PROJECT_ROOT / "checkpoint"), metadata={"help": "base HF checkpoint"})
    output_dir: str = field(default="adapters/run", metadata={"help": "where the best adapter is written"})


@dataclass
class LoraArguments:
    lora_r: int = field(default=32, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA scaling numerator"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA path"})
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    train_encoder: bool = field(default=False, metadata={"help": "LoRA on the encoder too (no caching)"})


@dataclass
class TrainArguments:
    learning_rate: float = 1e-3
    num_epochs: int = 8
    batch_size: int = 16
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    seed: int = 42
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "on GPU, when training the encoder"})
    eval_batch_size: int = 16
    eval_every_epochs: int = field(default=1, metadata={"help": "score dev every N epochs (and at the end)"})
    timestamp_fraction: float = field(
        default=0.5,
        metadata={"help": "share of clips shown with timestamp tokens (keeps long-form decoding)"},
    )
    max_new_tokens: int = 128


@dataclass
class Workers:
    """This process's part in a data-parallel run (`finetune/distributed.py`); alone, rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    prepare_model: Callable[[Any], Any] | None = None
    """Wraps the LoRA model for the run (Ray Train's `prepare_model`: device and DistributedDataParallel)."""

    def shard(self, items: list[Any]) -> list[Any]:
        """This rank's share, padded by wrapping around so that every rank runs the same number of steps."""
        if self.world_size == 1:
            return items
        per_rank = math.ceil(len(items) / self.world_size)
        mine = items[self.rank :: self.world_size]
        return (mine + items[: per_rank - len(mine)])[:per_rank]


def resolve_device(requested: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if requested == "auto" else requested


def add_lora(model: Any, args: LoraArguments) -> Any:
    """PEFT LoRA on the attention projections: the decoder's only, or the encoder's as well."""
    from peft import LoraConfig, get_peft_model

    names = "|".join(args.target_modules)
    targets = f".*\\.({names})" if args.train_encoder else DECODER_ATTENTION.format(names)
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets,
        bias="none",
    )
    return get_peft_model(model, config)


def encode(model: Any, examples: list[Example], batch_size: int, desc: str) -> list[Any]:
    """The frozen encoder's output for each clip, computed once."""
    import torch

    device, dtype = model.device, model.dtype
    encoder = model.get_encoder()
    out: list[Any] = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(examples), batch_size), desc=f"encoding {desc}", unit="batch"):
            feats = torch.from_numpy(np.stack([e.features for e in examples[start : start + batch_size]]))
            hidden = encoder(feats.to(device, dtype)).last_hidden_state
            out.extend(h.clone() for h in hidden)
    return out


def transcribe(
    model: Any, processor: Any, inputs: list[Any], cached: bool, data: DataArguments, args: TrainArguments
) -> list[str]:
    """Greedy decoding with the language and task tokens forced, as the model was trained."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    texts: list[str] = []
    model.eval()
    for start in range(0, len(inputs), args.eval_batch_size):
        batch = torch.stack([torch.as_tensor(x) for x in inputs[start : start + args.eval_batch_size]])
        batch = batch.to(model.device, model.dtype)
        source = (
            {"encoder_outputs": BaseModelOutput(last_hidden_state=batch)}
            if cached
            else {"input_features": batch}
        )
        with torch.inference_mode():
            ids = model.generate(
                **source,
                language=data.language,
                task=data.task,
                num_beams=1,
                do_sample=False,
                max_new_tokens=args.max_new_tokens,
            )
        texts.extend(t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True))
    return texts


@dataclass
class Evaluation:
    epoch: int
    step: int
    rates: ErrorRates
    hypotheses: list[str]


def evaluate(
    model: Any,
    processor: Any,
    dev: list[Example],
    inputs: list[Any],
    cached: bool,
    data: DataArguments,
    args: TrainArguments,
    epoch: int,
    step: int,
) -> Evaluation:
    hyps = transcribe(model, processor, inputs, cached, data, args)
    rates = score([e.text for e in dev], hyps)
    logger.info(
        "epoch %d: dev WER %.2f%% (normalised %.2f%%)", epoch, 100 * rates.wer, 100 * rates.wer_normalized
    )
    return Evaluation(epoch=epoch, step=step, rates=rates, hypotheses=hyps)


def _batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


def _train_epoch(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    collate: Collator,
    train: list[Example],
    inputs: list[Any],
    cached: bool,
    args: TrainArguments,
    rng: np.random.Generator,
    bar: Any,
) -> list[float]:
    from transformers.modeling_outputs import BaseModelOutput

    model.train()
    module = getattr(model, "module", model)  # under DistributedDataParallel
    losses: list[float] = []
    key = "encoder_hidden" if cached else "input_features"
    for indices in _batches(len(train), args.batch_size, rng):
        chosen = [
            e.timestamped_labels
            if e.timestamped_labels and rng.random() < args.timestamp_fraction
            else e.labels
            for e in (train[i] for i in indices)
        ]
        batch = collate(
            [{"labels": labels, key: inputs[i]} for labels, i in zip(chosen, indices, strict=True)]
        )
        labels = batch["labels"].to(module.device)
        source = batch[key].to(module.device, module.dtype)
        kwargs = (
            {"encoder_outputs": BaseModelOutput(last_hidden_state=source)}
            if cached
            else {"input_features": source}
        )
        loss = model(**kwargs, labels=labels).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        bar.update(1)
    return losses


def run(
    model_args: ModelArguments,
    data: DataArguments,
    lora_args: LoraArguments,
    args: TrainArguments,
    workers: Workers | None = None,
) -> dict[str, Any]:
    """Prepare data, score the base model, train, score after each epoch, keep the best adapter.

    With `workers`, this process trains on its shard of the train split; rank 0 alone scores dev and
    writes the adapter and the summary (other ranks return an empty summary).
    """
    workers = workers or Workers()
    lead = workers.rank == 0
    import torch
    from transformers import (
        WhisperForConditionalGeneration,
        WhisperProcessor,
        get_linear_schedule_with_warmup,
    )

    started = time.monotonic()
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    train_utts, dev_utts = load_splits(data)
    train_clips = len(train_utts)
    train_utts, dev_utts = workers.shard(train_utts), dev_utts if lead else []
    processor = WhisperProcessor.from_pretrained(model_args.checkpoint)
    train = prepare(train_utts, processor, data.language, data.task, "train")
    dev = prepare(dev_utts, processor, data.language, data.task, "dev")
    model = WhisperForConditionalGeneration.from_pretrained(model_args.checkpoint, dtype=torch.float32).to(
        device
    )
    cached = not lora_args.train_encoder
    if cached:
        train_in = encode(model, train, args.eval_batch_size, "train")
        dev_in = encode(model, dev, args.eval_batch_size, "dev")
    else:
        train_in, dev_in = [e.features for e in train], [e.features for e in dev]
    before = evaluate(model, processor, dev, dev_in, cached, data, args, epoch=0, step=0) if lead else None
    model = add_lora(model, lora_args)
    if not cached and args.gradient_checkpointing and device == "cuda":
        # Non-reentrant: works with frozen inputs (PEFT) and under DistributedDataParallel.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trained = workers.prepare_model(model) if workers.prepare_model else model
    steps = args.num_epochs * math.ceil(len(train) / args.batch_size)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=args.learning_rate,
        weight_decay=args.weight_decay,
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * steps), steps)
    collate = Collator(model.config.decoder_start_token_id)
    rng = np.random.default_rng(args.seed)
    evaluations, losses = [before], []
    output = Path(model_args.output_dir)
    best = before
    with tqdm(
        total=steps,
        desc=f"training (rank {workers.rank})" if workers.world_size > 1 else "training",
        unit="step",
    ) as bar:
        for epoch in range(1, args.num_epochs + 1):
            losses.append(
                _train_epoch(trained, optimizer, scheduler, collate, train, train_in, cached, args, rng, bar)
            )
            if not lead or (epoch % args.eval_every_epochs and epoch != args.num_epochs):
                continue
            evaluation = evaluate(model, processor, dev, dev_in, cached, data, args, epoch, bar.n)
            evaluations.append(evaluation)
            if evaluation.rates.wer < best.rates.wer or best is before:
                best = evaluation
                model.save_pretrained(output)
    if not lead:
        return {}
    assert before is not None and best is not None
    summary = _summary(
        model_args, data, lora_args, args, evaluations, best, losses, train, dev, started, device
    )
    summary["data"]["train_clips"] = train_clips
    summary["training"]["workers"] = workers.world_size
    (output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(format_summary(summary))
    return summary


def _summary(
    model_args: ModelArguments,
    data: DataArguments,
    lora_args: LoraArguments,
    args: TrainArguments,
    evaluations: list[Evaluation],
    best: Evaluation,
    losses: list[list[float]],
    train: list[Example],
    dev: list[Example],
    started: float,
    device: str,
) -> dict[str, Any]:
    from tuned_whisper.checkpoint import read_provenance

    provenance = read_provenance(Path(model_args.checkpoint))
    return {
        "adapter": str(Path(model_args.output_dir)),
        "base_checkpoint": model_args.checkpoint,
        "base_provenance": provenance.to_dict() if provenance else None,
        "data": {
            "train": data.train,
            "dev": data.dev,
            "train_clips": len(train),
            "dev_clips": len(dev),
            "language": data.language,
            "task": data.task,
        },
        "lora": asdict(lora_args),
        "training": asdict(args) | {"device": device},
        "before": evaluations[0].rates.to_dict(),
        "best": {"epoch": best.epoch, **best.rates.to_dict()},
        "evaluations": [{"epoch": e.epoch, "step": e.step, **e.rates.to_dict()} for e in evaluations],
        "mean_loss_per_epoch": [float(np.mean(epoch)) for epoch in losses],
        "train_seconds": round(time.monotonic() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "dev_examples": [
            {"reference": e.text, "before": b, "after": a}
            for e, b, a in zip(dev[:10], evaluations[0].hypotheses, best.hypotheses, strict=False)
        ],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The before/after table printed at the end of a run."""
    rows = [("before", summary["before"]), (f"after (epoch {summary['best']['epoch']})", summary["best"])]
    lines = [f"{'dev':<18}{'WER':>9}{'WER norm':>10}{'CER':>9}{'CER norm':>10}"]
    for name, r in rows:
        lines.append(
            f"{name:<18}{100 * r['wer']:>8.2f}%{100 * r['wer_normalized']:>9.2f}%"
            f"{100 * r['cer']:>8.2f}%{100 * r['cer_normalized']:>9.2f}%"
        )
    lines.append(
        f"train {summary['train_seconds']:.0f} s, peak RSS {summary['peak_rss_mb']:.0f} MB, "
        f"adapter in {summary['adapter']}"
    )
    return "\n".join(lines)
