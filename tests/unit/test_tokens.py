"""The replica's own tokenizer reads the checkpoint's tokenizer.json exactly as Transformers does."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IVR_EN


@pytest.fixture(scope="module")
def both(checkpoint_dir: Path) -> tuple[object, object]:
    from transformers import WhisperTokenizer

    from tuned_whisper.engine.tokens import WhisperTokens

    return WhisperTokens(checkpoint_dir), WhisperTokenizer.from_pretrained(str(checkpoint_dir))


def sentences() -> list[str]:
    texts = []
    for split in ("train", "dev"):
        with (IVR_EN / split / "metadata.csv").open(encoding="utf-8") as handle:
            texts += [row["transcription"] for row in csv.DictReader(handle)]
    return [
        *texts,
        "Guten Tag! Wann ist die Praxis morgen geöffnet?",
        "naïve café, 3D #9 *",
        "  two  spaces ",
    ]


def test_every_transcript_encodes_prompts_and_decodes_as_with_transformers(both: tuple) -> None:
    ours, theirs = both
    texts = sentences()
    assert len(texts) > 100
    for text in texts:
        ids = theirs.encode(" " + text, add_special_tokens=False)
        assert ours.encode(" " + text) == ids
        assert ours.get_prompt_ids(text).tolist() == theirs.get_prompt_ids(text).tolist()
        # a decode as the model writes it: timestamps around the text, end of text after
        timed = [theirs.convert_tokens_to_ids("<|0.00|>"), *ids, theirs.convert_tokens_to_ids("<|2.40|>")]
        timed.append(theirs.eos_token_id)
        for skip in (True, False):
            assert ours.decode(timed, skip_special_tokens=skip) == theirs.decode(
                timed, skip_special_tokens=skip
            )
    for token in ("<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|nocaptions|>", "<|notatoken|>"):
        assert ours.convert_tokens_to_ids(token) == theirs.convert_tokens_to_ids(token)
    assert (ours.eos_token_id, ours.unk_token_id) == (theirs.eos_token_id, theirs.unk_token_id)


def test_the_ctranslate2_decoder_never_imports_transformers(checkpoint_dir: Path) -> None:
    """A model replica on CTranslate2 decodes a window with neither Transformers, torch nor faster-whisper
    in its process (together about 70 MB of its memory)."""
    script = f"""
import sys, numpy as np
from tuned_whisper.config import EngineSettings
from tuned_whisper.engine.ctranslate2_engine import CTranslate2Decoder
from tuned_whisper.types import TranscribeOptions
decoder = CTranslate2Decoder({str(checkpoint_dir)!r}, EngineSettings(backend="ctranslate2", device="cpu"))
options = TranscribeOptions(language="en", initial_prompt="Zulu")
out = decoder.decode([np.zeros(16000, np.float32)], ["en"], options, 0.0)
print(len(out), *(name in sys.modules for name in ("transformers", "torch", "faster_whisper")))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "False", "False", "False"]
