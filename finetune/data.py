"""Training data for Whisper LoRA: audiofolder or JSONL manifest → log-mel features and label ids.

Everything a user can get wrong is checked before training starts, with the clip named: missing columns
or clips (`tuned_whisper.datasets`), undecodable audio, clips longer than Whisper's 30 s window,
transcripts too long for the decoder, empty splits, and a clip listed twice with different transcripts.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tuned_whisper.audio import SAMPLE_RATE, AudioDecodeError, decode_audio
from tuned_whisper.datasets import DatasetError, Utterance, load_utterances

logger = logging.getLogger("finetune.data")
MAX_CLIP_S = 30.0


@dataclass
class DataArguments:
    """Where the data is and how to read it (one JSON config can hold these with the other arguments)."""

    train: str = field(metadata={"help": "audiofolder split directory or .jsonl manifest to train on"})
    dev: str | None = field(default=None, metadata={"help": "dev split; default: a slice of train"})
    dev_fraction: float = field(
        default=0.1, metadata={"help": "share of train held out when no dev is given"}
    )
    language: str = field(default="en", metadata={"help": "language token forced in training and decoding"})
    task: str = field(default="transcribe", metadata={"help": "transcribe or translate"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N clips"})
    max_dev_samples: int | None = field(default=None, metadata={"help": "score only the first N dev clips"})


@dataclass(frozen=True)
class Example:
    """One clip ready for the model: its log-mel features and its label token ids."""

    id: str
    text: str
    features: np.ndarray
    labels: list[int]
    timestamped_labels: list[int] = field(default_factory=list)
    """The same transcript as one timestamped segment, `<|0.00|> text <|end|>`, as Whisper also learned."""


def deduplicate(utterances: Sequence[Utterance]) -> list[Utterance]:
    """Keep each clip once; a clip listed with two different transcripts is dropped, with a warning."""
    texts: dict[Path, set[str]] = {}
    for u in utterances:
        texts.setdefault(u.audio_path, set()).add(u.text)
    conflicting = sorted(path.name for path, seen in texts.items() if len(seen) > 1)
    if conflicting:
        logger.warning("dropping clips listed with different transcripts: %s", ", ".join(conflicting))
    kept: dict[Path, Utterance] = {}
    for u in utterances:
        if len(texts[u.audio_path]) == 1:
            kept.setdefault(u.audio_path, u)
    return list(kept.values())


def _in_dev(utterance: Utterance, fraction: float) -> bool:
    digest = hashlib.sha256(utterance.id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def load_splits(args: DataArguments) -> tuple[list[Utterance], list[Utterance]]:
    """Train and dev utterances; without a dev split, a stable hash of the clip id picks the dev share."""
    train = deduplicate(load_utterances(Path(args.train)))
    if args.dev:
        dev = deduplicate(load_utterances(Path(args.dev)))
    else:
        dev = [u for u in train if _in_dev(u, args.dev_fraction)]
        train = [u for u in train if not _in_dev(u, args.dev_fraction)]
    train, dev = train[: args.max_train_samples], dev[: args.max_dev_samples]
    for name, split in (("train", train), ("dev", dev)):
        if not split:
            raise DatasetError(f"the {name} split is empty; add clips or change --dev_fraction")
    return train, dev


def label_ids(tokenizer: Any, text: str, language: str, task: str) -> list[int]:
    """<|startoftranscript|><|lang|><|task|><|notimestamps|> text<|endoftext|>, as Whisper is prompted.

    The text starts with a space, as in Whisper's own training data (its first word is ` Press`, not
    `Press`), so fine-tuning does not have to unlearn that.
    """
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    return list(tokenizer(" " + text.strip()).input_ids)


TIME_PRECISION_S = 0.02


def timestamped_label_ids(
    tokenizer: Any, text: str, language: str, task: str, duration_s: float
) -> list[int]:
    """<|startoftranscript|><|lang|><|task|><|0.00|> text <|end|><|endoftext|>: the clip as one segment.

    Training on these too keeps timestamp prediction, which long audio (30 s windows merged on their
    timestamps) depends on, from being forgotten.
    """
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=True)
    prefix = tokenizer.prefix_tokens
    end = min(round(duration_s / TIME_PRECISION_S) * TIME_PRECISION_S, MAX_CLIP_S)
    start_id, end_id = (tokenizer.convert_tokens_to_ids(f"<|{t:.2f}|>") for t in (0.0, end))
    text_ids = tokenizer(" " + text.strip(), add_special_tokens=False).input_ids
    return [*prefix, start_id, *text_ids, end_id, tokenizer.eos_token_id]


def _decode(utterance: Utterance) -> np.ndarray:
    try:
        audio = decode_audio(utterance.audio_path, max_duration_s=MAX_CLIP_S)
    except AudioDecodeError as exc:
        reason = (
            f"is longer than Whisper's {MAX_CLIP_S:.0f} s window; cut it" if exc.reason == "too_long" else ""
        )
        raise DatasetError(
            f"clip '{utterance.audio_path}' {reason or 'cannot be used: ' + str(exc)}"
        ) from exc
    return audio


def prepare(
    utterances: Sequence[Utterance], processor: Any, language: str, task: str, desc: str
) -> list[Example]:
    """Decode, featurise and tokenise every clip, refusing the first that cannot be trained on."""
    max_labels = processor.tokenizer.model_max_length
    examples: list[Example] = []
    for u in tqdm(utterances, desc=f"preparing {desc}", unit="clip"):
        labels = label_ids(processor.tokenizer, u.text, language, task)
        if len(labels) > max_labels:
            raise DatasetError(
                f"the transcript of '{u.audio_path}' is {len(labels)} tokens; Whisper's decoder holds "
                f"{max_labels}: split the clip and its transcript"
            )
        audio = _decode(u)
        features = processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np")
        timestamped = timestamped_label_ids(
            processor.tokenizer, u.text, language, task, len(audio) / SAMPLE_RATE
        )
        # One token longer than `labels`; when that no longer fits, the clip trains without timestamps
        # (cutting it would drop the end timestamp and <|endoftext|>).
        if len(timestamped) > max_labels:
            timestamped = []
        examples.append(Example(u.id, u.text, features.input_features[0], labels, timestamped))
    return examples


@dataclass
class Collator:
    """Pads labels with -100 (ignored by the loss) and drops the start token the model adds itself."""

    decoder_start_token_id: int

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        labels = [list(item["labels"]) for item in batch]
        labels = [ids[1:] if ids and ids[0] == self.decoder_start_token_id else ids for ids in labels]
        width = max(len(ids) for ids in labels)
        padded = torch.full((len(labels), width), -100, dtype=torch.long)
        for row, ids in enumerate(labels):
            padded[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        out: dict[str, Any] = {"labels": padded}
        key = "encoder_hidden" if "encoder_hidden" in batch[0] else "input_features"
        out[key] = torch.stack([torch.as_tensor(item[key]) for item in batch])
        return out
