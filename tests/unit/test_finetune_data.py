"""Fine-tuning data is checked before any training: each problem names the clip and says what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from finetune.data import Collator, DataArguments, deduplicate, load_splits, prepare
from tests.clips import JFK
from tuned_whisper.audio import ffmpeg_binary
from tuned_whisper.datasets import DatasetError, Utterance


@pytest.fixture(scope="module")
def processor(checkpoint_dir: Path) -> object:
    from transformers import WhisperProcessor

    return WhisperProcessor.from_pretrained(checkpoint_dir)


def audiofolder(root: Path, rows: list[tuple[str, str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = ["file_name,transcription"] + [f'{name},"{text}"' for name, text in rows]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_an_undecodable_clip_is_named_before_training(tmp_path: Path, processor: object) -> None:
    data = audiofolder(tmp_path / "train", [("broken.wav", "press 1")])
    (data / "broken.wav").write_text("not audio")
    train, _ = load_splits(DataArguments(train=str(data), dev=str(data)))
    with pytest.raises(DatasetError, match=r"broken\.wav"):
        prepare(train, processor, "en", "transcribe", "train")


def test_a_clip_longer_than_whispers_window_is_refused(tmp_path: Path, processor: object) -> None:
    data = audiofolder(tmp_path / "train", [("long.wav", "a long monologue")])
    subprocess.run(
        [ffmpeg_binary(), "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=35", str(data / "long.wav")],
        check=True,
    )
    train, _ = load_splits(DataArguments(train=str(data), dev=str(data)))
    with pytest.raises(DatasetError, match=r"long.wav.*30 s window"):
        prepare(train, processor, "en", "transcribe", "train")


def test_a_transcript_too_long_for_the_decoder_is_refused(tmp_path: Path, processor: object) -> None:
    data = audiofolder(tmp_path / "train", [("jfk.flac", "ask not " * 300)])
    (data / "jfk.flac").write_bytes(JFK.path.read_bytes())
    train, _ = load_splits(DataArguments(train=str(data), dev=str(data)))
    with pytest.raises(DatasetError, match=r"jfk.flac.*tokens"):
        prepare(train, processor, "en", "transcribe", "train")


def test_an_empty_dev_split_is_refused(tmp_path: Path) -> None:
    data = audiofolder(tmp_path / "train", [("jfk.flac", "ask not")])
    (data / "jfk.flac").write_bytes(JFK.path.read_bytes())
    with pytest.raises(DatasetError, match="dev split is empty"):
        load_splits(DataArguments(train=str(data), dev_fraction=0.0))


def test_a_clip_listed_with_two_transcripts_is_dropped_and_exact_repeats_kept_once(tmp_path: Path) -> None:
    a, b = tmp_path / "a.flac", tmp_path / "b.flac"
    rows = [
        Utterance(a, "at", "a"),
        Utterance(b, "We're sorry.", "b"),
        Utterance(a, "at", "a"),
        Utterance(b, "I'm sorry, but I was unable to locate the person", "b"),
    ]
    assert deduplicate(rows) == [Utterance(a, "at", "a")]


def test_labels_carry_the_forced_language_and_task_and_the_collator_pads_them(processor: object) -> None:
    ids = processor.tokenizer  # type: ignore[attr-defined]
    prepared = prepare([Utterance(JFK.path, "press # now", "jfk")], processor, "en", "transcribe", "t")[0]
    tokens = ids.convert_ids_to_tokens(prepared.labels[:4])
    assert tokens == ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    # The text starts with a space, as in Whisper's own training data.
    assert ids.decode(prepared.labels, skip_special_tokens=True) == " press # now"
    # The same clip as one timestamped segment: <|0.00|> text <|end of the clip|> (JFK is 11.0 s).
    timestamped = ids.decode(prepared.timestamped_labels, decode_with_timestamps=True)
    prompt = "<|startoftranscript|><|en|><|transcribe|>"
    assert timestamped == prompt + "<|0.00|> press # now<|11.00|><|endoftext|>"
    collate = Collator(decoder_start_token_id=ids.convert_tokens_to_ids("<|startoftranscript|>"))
    batch = collate(
        [
            {"labels": prepared.labels, "input_features": prepared.features},
            {"labels": prepared.labels[:6], "input_features": prepared.features},
        ]
    )
    assert batch["labels"].shape == (2, len(prepared.labels) - 1)  # the start token is the model's to add
    assert (batch["labels"][1, 5:] == -100).all()
    assert batch["input_features"].shape == (2, 80, 3000)


def test_a_transcript_filling_the_decoder_trains_without_timestamps_not_cut(processor: object) -> None:
    tokenizer = processor.tokenizer  # type: ignore[attr-defined]
    prompt_and_end = 5  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|> ... <|endoftext|>
    text = "a" + " a" * (tokenizer.model_max_length - prompt_and_end - 1)
    (example,) = prepare([Utterance(JFK.path, text, "jfk")], processor, "en", "transcribe", "t")
    assert len(example.labels) == tokenizer.model_max_length
    assert example.labels[-1] == tokenizer.eos_token_id
    assert example.timestamped_labels == []
