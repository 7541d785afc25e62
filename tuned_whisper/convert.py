"""Convert an OpenAI Whisper model in CTranslate2 format into a Hugging Face Whisper checkpoint.

This reads ctranslate2's Whisper converter backwards: CT2 fuses self-attention q/k/v into one linear and
cross-attention k/v into another, stores the (absent) k bias as zeros, names layer norms gamma/beta and
ties the output projection to the token embeddings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuned_whisper.ct2_format import CT2Model

# Special tokens that are not languages, in Whisper's vocabulary order after the language tokens.
_TASK_TOKENS = ("<|translate|>", "<|transcribe|>")
_NON_LANGUAGE_SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    *_TASK_TOKENS,
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
# Bump when the conversion's output changes, so that stale converted checkpoints are rebuilt.
CONVERTER_VERSION = 2
N_TIMESTAMP_TOKENS = 1501  # <|0.00|> … <|30.00|> in steps of 0.02 s


@dataclass(frozen=True)
class WhisperDims:
    """Architecture read off the tensor shapes."""

    n_mels: int
    vocab_size: int
    d_model: int
    n_heads: int
    ffn_dim: int
    encoder_layers: int
    decoder_layers: int
    max_source_positions: int
    max_target_positions: int

    @property
    def is_multilingual(self) -> bool:
        return self.vocab_size >= 51865


def _count_layers(variables: dict[str, np.ndarray], prefix: str) -> int:
    pattern = re.compile(rf"{prefix}/layer_(\d+)/")
    return len({m.group(1) for name in variables if (m := pattern.match(name))})


def read_dims(model: CT2Model) -> WhisperDims:
    v = model.variables
    vocab_size, d_model = v["decoder/embeddings/weight"].shape
    return WhisperDims(
        n_mels=v["encoder/conv1/weight"].shape[1],
        vocab_size=vocab_size,
        d_model=d_model,
        n_heads=int(model.scalar("encoder/num_heads")),
        ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        encoder_layers=_count_layers(v, "encoder"),
        decoder_layers=_count_layers(v, "decoder"),
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
    )


def _linear(v: dict[str, np.ndarray], src: str, dst: str, bias: bool = True) -> dict[str, np.ndarray]:
    out = {f"{dst}.weight": v[f"{src}/weight"]}
    if bias:
        out[f"{dst}.bias"] = v[f"{src}/bias"]
    return out


def _norm(v: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": v[f"{src}/gamma"], f"{dst}.bias": v[f"{src}/beta"]}


def _split_linear(
    v: dict[str, np.ndarray], src: str, dst: str, names: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Split a fused CT2 linear into HF projections; k_proj has no bias in Whisper (CT2 stores zeros)."""
    weights = np.split(v[f"{src}/weight"], len(names), axis=0)
    biases = np.split(v[f"{src}/bias"], len(names), axis=0)
    out: dict[str, np.ndarray] = {}
    for name, weight, bias in zip(names, weights, biases, strict=True):
        out[f"{dst}.{name}.weight"] = weight
        if name != "k_proj":
            out[f"{dst}.{name}.bias"] = bias
    return out


def _encoder_layer(v: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
    return {
        **_split_linear(
            v, f"{src}/self_attention/linear_0", f"{dst}.self_attn", ("q_proj", "k_proj", "v_proj")
        ),
        **_linear(v, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj"),
        **_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"),
        **_linear(v, f"{src}/ffn/linear_0", f"{dst}.fc1"),
        **_linear(v, f"{src}/ffn/linear_1", f"{dst}.fc2"),
        **_norm(v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"),
    }


def _decoder_layer(v: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
    return {
        **_split_linear(
            v, f"{src}/self_attention/linear_0", f"{dst}.self_attn", ("q_proj", "k_proj", "v_proj")
        ),
        **_linear(v, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj"),
        **_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"),
        **_linear(v, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj"),
        **_split_linear(v, f"{src}/attention/linear_1", f"{dst}.encoder_attn", ("k_proj", "v_proj")),
        **_linear(v, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj"),
        **_norm(v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm"),
        **_linear(v, f"{src}/ffn/linear_0", f"{dst}.fc1"),
        **_linear(v, f"{src}/ffn/linear_1", f"{dst}.fc2"),
        **_norm(v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"),
    }


def hf_state_dict(model: CT2Model, dims: WhisperDims) -> dict[str, np.ndarray]:
    """Map CT2 variables onto `WhisperForConditionalGeneration` parameter names (float32)."""
    v = model.variables
    state = {
        **_linear(v, "encoder/conv1", "model.encoder.conv1"),
        **_linear(v, "encoder/conv2", "model.encoder.conv2"),
        "model.encoder.embed_positions.weight": v["encoder/position_encodings/encodings"],
        **_norm(v, "encoder/layer_norm", "model.encoder.layer_norm"),
        "model.decoder.embed_tokens.weight": v["decoder/embeddings/weight"],
        "model.decoder.embed_positions.weight": v["decoder/position_encodings/encodings"],
        **_norm(v, "decoder/layer_norm", "model.decoder.layer_norm"),
    }
    for i in range(dims.encoder_layers):
        state.update(_encoder_layer(v, i))
    for i in range(dims.decoder_layers):
        state.update(_decoder_layer(v, i))
    return {name: np.ascontiguousarray(t, dtype=np.float32) for name, t in state.items()}


def read_vocabulary(ct2_dir: Path) -> list[str]:
    """The CT2 vocabulary, one token per id (vocabulary.txt or vocabulary.json)."""
    if (ct2_dir / "vocabulary.json").exists():
        return json.loads((ct2_dir / "vocabulary.json").read_text(encoding="utf-8"))
    return (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")[:-1]


def _token_ids(vocabulary: list[str]) -> dict[str, int]:
    return {token: i for i, token in enumerate(vocabulary)}


def generation_settings(vocabulary: list[str], ct2_config: dict, dims: WhisperDims) -> dict:
    """A full Whisper `GenerationConfig` as a dict, from the CT2 config and the vocabulary."""
    ids = _token_ids(vocabulary)
    eot = ids["<|endoftext|>"]
    settings: dict = {
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": ids["<|startoftranscript|>"],
        "no_timestamps_token_id": ids["<|notimestamps|>"],
        "prev_sot_token_id": ids["<|startofprev|>"],
        "suppress_tokens": list(ct2_config["suppress_ids"]),
        "begin_suppress_tokens": list(ct2_config["suppress_ids_begin"]),
        "alignment_heads": [list(pair) for pair in ct2_config["alignment_heads"]],
        "max_initial_timestamp_index": 50,  # Whisper allows the first timestamp up to 1.0 s
        "max_length": dims.max_target_positions,
        "is_multilingual": dims.is_multilingual,
        "return_timestamps": False,
    }
    if dims.is_multilingual:
        languages = [vocabulary[i] for i in ct2_config["lang_ids"]]
        settings["lang_to_id"] = {token: ids[token] for token in languages}
        settings["task_to_id"] = {task: ids[f"<|{task}|>"] for task in ("transcribe", "translate")}
        # Without a task, transformers 5 leaves <|transcribe|> out of the decoder prompt.
        settings["task"] = "transcribe"
    return settings


def special_tokens(vocabulary: list[str], ct2_config: dict, dims: WhisperDims) -> list[str]:
    """Whisper's special tokens (non-language ones in the vocabulary, and the languages), by id."""
    present = set(vocabulary)
    languages = [vocabulary[i] for i in ct2_config["lang_ids"]] if dims.is_multilingual else []
    specials = {t for t in _NON_LANGUAGE_SPECIALS if t in present} | set(languages)
    # In vocabulary order: WhisperTokenizer takes the last special token's id + 1 as the first timestamp.
    return [t for t in vocabulary if t in specials]


def timestamp_tokens() -> list[str]:
    return [f"<|{i * 0.02:.2f}|>" for i in range(N_TIMESTAMP_TOKENS)]


def tokenizer_json(tokenizer_file: Path, vocabulary: list[str], specials: list[str]) -> str:
    """The shipped tokenizer.json, with Whisper's special tokens marked and the timestamp tokens added.

    Editing the JSON is instant; `add_tokens` for 1,501 timestamps takes minutes in transformers 5.
    """
    raw = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    special = set(specials)
    for token in raw["added_tokens"]:
        token["special"] = token["content"] in special
    present = {token["content"] for token in raw["added_tokens"]}
    ids = _token_ids(vocabulary)
    for content in timestamp_tokens():
        if content in ids and content not in present:
            raw["added_tokens"].append(
                {
                    "id": ids[content],
                    "content": content,
                    "single_word": False,
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": False,
                    "special": False,
                }
            )
    return json.dumps(raw, ensure_ascii=False)


def _build_tokenizer(tokenizer_file: Path, vocabulary: list[str], ct2_config: dict, dims: WhisperDims):
    from tokenizers import Tokenizer
    from transformers import WhisperTokenizer

    specials = special_tokens(vocabulary, ct2_config, dims)
    tokenizer = WhisperTokenizer(
        tokenizer_object=Tokenizer.from_str(tokenizer_json(tokenizer_file, vocabulary, specials)),
        pad_token="<|endoftext|>",
        model_max_length=dims.max_target_positions,
        additional_special_tokens=specials,
    )
    if len(tokenizer) != dims.vocab_size:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary is {dims.vocab_size}"
        )
    return tokenizer


def _model_config(dims: WhisperDims, generation: dict):
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=dims.vocab_size,
        num_mel_bins=dims.n_mels,
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        decoder_layers=dims.decoder_layers,
        encoder_attention_heads=dims.n_heads,
        decoder_attention_heads=dims.n_heads,
        encoder_ffn_dim=dims.ffn_dim,
        decoder_ffn_dim=dims.ffn_dim,
        max_source_positions=dims.max_source_positions,
        max_target_positions=dims.max_target_positions,
        pad_token_id=generation["pad_token_id"],
        bos_token_id=generation["bos_token_id"],
        eos_token_id=generation["eos_token_id"],
        decoder_start_token_id=generation["decoder_start_token_id"],
        suppress_tokens=generation["suppress_tokens"],
        begin_suppress_tokens=generation["begin_suppress_tokens"],
        tie_word_embeddings=True,
        scale_embedding=False,
        activation_function="gelu",
    )


def convert_ct2_whisper(model: CT2Model, ct2_dir: Path, out_dir: Path) -> WhisperDims:
    """Write a complete HF Whisper checkpoint (weights, config, generation config, processor) to `out_dir`."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    if model.spec_name != "WhisperSpec":
        raise ValueError(f"expected a CTranslate2 Whisper model, found {model.spec_name}")
    dims = read_dims(model)
    ct2_config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    vocabulary = read_vocabulary(ct2_dir)
    generation = generation_settings(vocabulary, ct2_config, dims)

    hf_model = WhisperForConditionalGeneration(_model_config(dims, generation))
    tensors = {name: torch.from_numpy(array) for name, array in hf_state_dict(model, dims).items()}
    result = hf_model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys or set(result.missing_keys) != {"proj_out.weight"}:
        raise ValueError(f"weight mapping mismatch: {result}")
    hf_model.tie_weights()
    hf_model.generation_config = GenerationConfig(**generation)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out_dir)

    tokenizer = _build_tokenizer(ct2_dir / "tokenizer.json", vocabulary, ct2_config, dims)
    features = WhisperFeatureExtractor(feature_size=dims.n_mels)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out_dir)
    return dims
