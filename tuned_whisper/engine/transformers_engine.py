"""The card's backend: a Transformers `pipeline("automatic-speech-recognition")` over a HF checkpoint.

Each batch of windows runs the encoder once; the first decoder step gives the language and the
no-speech probability, `generate` the timestamped tokens, and one teacher-forced pass their
log-probabilities. CUDA fp16 when a GPU is there, else CPU fp32.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# torch's OpenMP threads spin while idle; on a small machine under load that starves the real work.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE
from tuned_whisper.checkpoint import CheckpointError, is_checkpoint
from tuned_whisper.engine.base import ModelInfo, Vocabulary
from tuned_whisper.engine.quality import compression_ratio
from tuned_whisper.engine.windows import Decoded
from tuned_whisper.types import TranscribeOptions

if TYPE_CHECKING:
    import torch

    from tuned_whisper.config import EngineSettings

SEED = 0
PROMPT_RESERVE = 4  # <|startoftranscript|> <|lang|> <|task|> and one timestamp token


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no GPU; use --device cpu or auto")
    return requested


def vocabulary(tokenizer: Any) -> Vocabulary:
    return Vocabulary(eot=tokenizer.eos_token_id, timestamp_begin=tokenizer.convert_tokens_to_ids("<|0.00|>"))


def no_speech_id(tokenizer: Any) -> int:
    for token in ("<|nocaptions|>", "<|nospeech|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id != tokenizer.unk_token_id:
            return int(token_id)
    raise CheckpointError("the tokenizer has no <|nocaptions|> / <|nospeech|> token")


class TransformersDecoder:
    """Whisper through the Transformers ASR pipeline's model, tokenizer and feature extractor."""

    def __init__(self, checkpoint: str | Path, engine: EngineSettings, adapter: Path | None = None) -> None:
        import torch
        from transformers.utils import logging as hf_logging

        if Path(checkpoint).exists() and not is_checkpoint(Path(checkpoint)):
            raise CheckpointError(
                f"no Whisper checkpoint in '{checkpoint}'; build one with `tuned-whisper checkpoint build`"
            )
        hf_logging.set_verbosity_error()
        device = resolve_device(engine.device)
        dtype = torch.float16 if device == "cuda" else torch.float32
        if device == "cpu":
            torch.set_num_threads(engine.num_threads or available_cores())
        self.settings = engine
        self.pipe = self._pipeline(checkpoint, adapter, dtype, device)
        self.model = self.pipe.model.eval()
        self.tokenizer = self.pipe.tokenizer
        self.vocab = vocabulary(self.tokenizer)
        self.no_speech = no_speech_id(self.tokenizer)
        generation = self.model.generation_config
        self.is_multilingual = bool(getattr(generation, "is_multilingual", False))
        self.languages = list(getattr(generation, "lang_to_id", {}) or {})
        self.info = ModelInfo(
            checkpoint=str(checkpoint),
            device=device,
            dtype=str(dtype).removeprefix("torch."),
            is_multilingual=self.is_multilingual,
            adapter=str(adapter) if adapter else None,
            backend="transformers",
        )

    @staticmethod
    def _pipeline(checkpoint: str | Path, adapter: Path | None, dtype: Any, device: str) -> Any:
        from transformers import WhisperProcessor, pipeline

        if adapter is None:
            return pipeline("automatic-speech-recognition", model=str(checkpoint), dtype=dtype, device=device)
        from tuned_whisper.adapters import load_merged

        processor = WhisperProcessor.from_pretrained(str(checkpoint))
        return pipeline(
            "automatic-speech-recognition",
            model=load_merged(checkpoint, Path(adapter), dtype, device),
            tokenizer=processor.tokenizer,
            feature_extractor=processor.feature_extractor,
            dtype=dtype,
            device=device,
        )

    def _encode(self, windows: Sequence[np.ndarray]) -> Any:
        """Encoder states of windows padded to 30 s (no attention mask: Whisper's short-form decode)."""
        features = self.pipe.feature_extractor(
            [np.asarray(w, dtype=np.float32) for w in windows], sampling_rate=SAMPLE_RATE, return_tensors="pt"
        )
        inputs = features.input_features.to(self.model.device, self.model.dtype)
        return self.model.get_encoder()(inputs)

    def _first_step(self, encoded: Any) -> torch.Tensor:
        """Log-probabilities after `<|startoftranscript|>`: languages and no-speech."""
        import torch

        batch = encoded.last_hidden_state.shape[0]
        start = torch.full(
            (batch, 1), self.model.generation_config.decoder_start_token_id, device=self.model.device
        )
        logits = self.model(encoder_outputs=encoded, decoder_input_ids=start).logits[:, -1]
        return torch.log_softmax(logits.float(), dim=-1)

    def _languages(self, first: torch.Tensor) -> list[tuple[str, float]]:
        import torch

        if not self.is_multilingual:
            return [("en", 1.0)] * first.shape[0]
        ids = torch.tensor([self.tokenizer.convert_tokens_to_ids(t) for t in self.languages])
        probs = torch.softmax(first[:, ids.to(first.device)], dim=-1)
        best = torch.argmax(probs, dim=-1).tolist()
        return [(self.languages[b].strip("<|>"), float(probs[i, b])) for i, b in enumerate(best)]

    def detect_languages(self, heads: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        import torch

        if not heads:
            return []
        with torch.inference_mode():
            encoded = self._encode([h[: 30 * SAMPLE_RATE] for h in heads])
            return self._languages(self._first_step(encoded))

    def decode(
        self,
        windows: Sequence[np.ndarray],
        languages: Sequence[str | None],
        options: TranscribeOptions,
        temperature: float,
    ) -> list[Decoded]:
        import torch

        if not windows:
            return []
        with torch.inference_mode():
            encoded = self._encode(windows)
            first = self._first_step(encoded)
            detected = self._languages(first)
            chosen = [lang or detected[i][0] for i, lang in enumerate(languages)]
            kwargs = self._generate_kwargs(options, chosen, temperature)
            if temperature > 0:
                torch.manual_seed(SEED)  # a fallback decodes the same way every time
            generated = self.model.generate(encoder_outputs=encoded, **kwargs)
            if options.word_timestamps:
                tokens, times = generated["sequences"], generated["token_timestamps"]
            else:
                tokens, times = generated, None
            spans = [self._span(row) for row in tokens.tolist()]
            rows = [row[span] for row, span in zip(tokens.tolist(), spans, strict=True)]
            logprobs = self._avg_logprobs(encoded, rows, kwargs)
        no_speech = first[:, self.no_speech].exp().tolist()
        return [
            Decoded(
                tokens=np.asarray(row, dtype=np.int64),
                avg_logprob=logprobs[i],
                no_speech_prob=float(no_speech[i]),
                temperature=temperature,
                language=chosen[i],
                compression_ratio=compression_ratio(self.tokenizer.decode(row, skip_special_tokens=True)),
                token_timestamps=None if times is None else times[i][spans[i]].float().cpu().numpy(),
            )
            for i, row in enumerate(rows)
        ]

    def _span(self, row: list[int]) -> slice:
        """Where the generated ids are: after the forced start tokens, before the first end-of-text."""
        eot, first_timestamp = self.vocab.eot, self.vocab.timestamp_begin
        sot = self.model.generation_config.decoder_start_token_id
        start = row.index(sot) + 1 if sot in row else 0  # a prompt (<|startofprev|> ...) comes before it
        while start < len(row) and eot < row[start] < first_timestamp:
            start += 1
        end = row.index(eot, start) if eot in row[start:] else len(row)
        return slice(start, end)

    def _prefix(self, language: str, kwargs: dict[str, Any]) -> list[int]:
        """The decoder's forced start: previous-text prompt, then start, language and task tokens."""
        tokenizer = self.tokenizer
        prefix: list[int] = []
        if "prompt_ids" in kwargs:
            prefix += [int(t) for t in kwargs["prompt_ids"].tolist()]
        prefix.append(self.model.generation_config.decoder_start_token_id)
        if self.is_multilingual:
            prefix.append(tokenizer.convert_tokens_to_ids(f"<|{language}|>"))
            prefix.append(tokenizer.convert_tokens_to_ids(f"<|{kwargs.get('task', 'transcribe')}|>"))
        return prefix

    def _avg_logprobs(self, encoded: Any, rows: list[list[int]], kwargs: dict[str, Any]) -> list[float]:
        """Average log-probability of each row's tokens and its end-of-text, teacher-forced."""
        import torch

        languages = kwargs.get("language") or ["en"] * len(rows)
        prefixes = [self._prefix(lang, kwargs) for lang in languages]
        limit = self.model.config.max_target_positions  # a row that filled the decoder loses its tail here
        rows = [r[: max(0, limit - len(p) - 1)] for p, r in zip(prefixes, rows, strict=True)]
        sequences = [p + r + [self.vocab.eot] for p, r in zip(prefixes, rows, strict=True)]
        width = max(len(s) for s in sequences)
        padded = torch.full((len(rows), width), self.vocab.eot, dtype=torch.long, device=self.model.device)
        for i, sequence in enumerate(sequences):
            padded[i, : len(sequence)] = torch.tensor(sequence)
        logits = self.model(encoder_outputs=encoded, decoder_input_ids=padded).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        averages = []
        for i, (prefix, row) in enumerate(zip(prefixes, rows, strict=True)):
            targets = torch.tensor([*row, self.vocab.eot], device=logits.device)
            positions = torch.arange(len(prefix) - 1, len(prefix) - 1 + len(targets), device=logits.device)
            total = logprobs[i, positions, targets].sum().item()
            averages.append(total / (len(row) + 1))
        return averages

    def _generate_kwargs(
        self, options: TranscribeOptions, languages: list[str], temperature: float
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "num_beams": self.settings.num_beams,
            "max_new_tokens": self.settings.max_new_tokens,
            "return_timestamps": True,
            "force_unique_generate_call": True,  # one pass per window: the long-form loop is ours
        }
        if options.word_timestamps:
            kwargs.update(return_token_timestamps=True, return_segments=True)
        if self.is_multilingual:
            kwargs.update(language=languages, task=options.task)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
        else:
            kwargs["do_sample"] = False
        if options.initial_prompt:
            prompt_ids = self.tokenizer.get_prompt_ids(options.initial_prompt, return_tensors="pt")
            room = (
                self.model.config.max_target_positions // 2 - 1
            )  # Whisper keeps prompts to half the context
            prompt_ids = prompt_ids[-room:].to(self.model.device)
            kwargs["prompt_ids"] = prompt_ids
            budget = self.model.config.max_target_positions - len(prompt_ids) - PROMPT_RESERVE
            kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], budget)
        return kwargs
