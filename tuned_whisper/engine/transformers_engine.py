"""The Transformers engine: `pipeline("automatic-speech-recognition")` over a HF Whisper checkpoint.

Long audio is decoded in 30 s windows with overlapping strides and timestamps on: without timestamps Whisper
may end a window after one token and the chunked pipeline then drops it whole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# torch's OpenMP threads spin while idle; on a small machine under load that starves the real work.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE
from tuned_whisper.checkpoint import CheckpointError, is_checkpoint
from tuned_whisper.engine.base import ModelInfo, ProgressCallback
from tuned_whisper.engine.segments import segments_from_chunks, segments_from_words
from tuned_whisper.languages import language_code
from tuned_whisper.types import TranscribeOptions, Transcript

if TYPE_CHECKING:
    from tuned_whisper.config import EngineSettings, Settings

_PROMPT_RESERVE = 4  # <|startoftranscript|> <|lang|> <|task|> and one timestamp token


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no GPU; use --device cpu or auto")
    return requested


def count_windows(n_samples: int, chunk_s: float, stride_s: float) -> int:
    """How many windows the chunked pipeline cuts `n_samples` into (for progress reporting)."""
    chunk = round(chunk_s * SAMPLE_RATE)
    step = chunk - 2 * round(stride_s * SAMPLE_RATE)
    return 1 + max(0, math.ceil((n_samples - chunk) / step))


class TransformersTranscriber:
    """Whisper through the Transformers ASR pipeline; CUDA fp16 when a GPU is there, else CPU fp32."""

    def __init__(self, checkpoint: str | Path, engine: EngineSettings) -> None:
        import torch
        from transformers import pipeline
        from transformers.utils import logging as hf_logging

        if Path(checkpoint).exists() and not is_checkpoint(Path(checkpoint)):
            raise CheckpointError(
                f"no Whisper checkpoint in '{checkpoint}'; build one with `tuned-whisper checkpoint build`"
            )
        hf_logging.set_verbosity_error()  # the pipeline warns on every chunked call
        device = resolve_device(engine.device)
        dtype = torch.float16 if device == "cuda" else torch.float32
        if device == "cpu":
            torch.set_num_threads(engine.num_threads or available_cores())
        self.settings = engine
        self.pipe = pipeline(
            "automatic-speech-recognition", model=str(checkpoint), dtype=dtype, device=device
        )
        self.model = self.pipe.model.eval()
        self.tokenizer = self.pipe.tokenizer
        self.stride_s = (
            engine.stride_length_s if engine.stride_length_s is not None else engine.chunk_length_s / 6
        )
        generation = self.model.generation_config
        self.is_multilingual = bool(getattr(generation, "is_multilingual", False))
        self.info = ModelInfo(
            checkpoint=str(checkpoint),
            device=device,
            dtype=str(dtype).removeprefix("torch."),
            is_multilingual=self.is_multilingual,
        )
        self._windows_done = 0
        self._progress: tuple[ProgressCallback, int] | None = None
        self._generate = self.model.generate
        self.model.generate = self._generate_and_count  # the pipeline calls model.generate per batch

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersTranscriber:
        return cls(settings.checkpoint, settings.engine)

    def _generate_and_count(self, *args: Any, **kwargs: Any) -> Any:
        """Wraps `model.generate` to report progress after each batch of windows is decoded."""
        tokens = self._generate(*args, **kwargs)
        self._windows_done += int(
            tokens["sequences"].shape[0] if isinstance(tokens, dict) else tokens.shape[0]
        )
        if self._progress is not None:
            callback, total = self._progress
            callback(min(1.0, self._windows_done / total))
        return tokens

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """The most likely language of the first 30 s and its probability."""
        return self.detect_languages([audio])[0]

    def detect_languages(self, audios: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Language and probability for each audio, from its first 30 s, in one forward pass."""
        import torch

        if not self.is_multilingual or not audios:
            return [("en", 1.0)] * len(audios)
        generation = self.model.generation_config
        heads = [audio[: 30 * SAMPLE_RATE] for audio in audios]
        features = self.pipe.feature_extractor(
            heads, sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features
        features = features.to(self.model.device, self.model.dtype)
        start = torch.full((len(audios), 1), generation.decoder_start_token_id, device=self.model.device)
        with torch.inference_mode():
            logits = self.model(input_features=features, decoder_input_ids=start).logits[:, -1]
        tokens = list(generation.lang_to_id)
        ids = torch.tensor([generation.lang_to_id[t] for t in tokens], device=logits.device)
        probs = torch.softmax(logits[:, ids].float(), dim=-1)
        best = torch.argmax(probs, dim=-1).tolist()
        return [(tokens[b].strip("<|>"), float(probs[i, b])) for i, b in enumerate(best)]

    def _generate_kwargs(self, options: TranscribeOptions, language: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "num_beams": self.settings.num_beams,
            "max_new_tokens": self.settings.max_new_tokens,
        }
        if self.is_multilingual:
            kwargs.update(language=language, task=options.task)
        if options.temperature > 0:
            kwargs.update(do_sample=True, temperature=options.temperature)
        else:
            kwargs["do_sample"] = False
        if options.initial_prompt:
            prompt_ids = self.tokenizer.get_prompt_ids(options.initial_prompt, return_tensors="pt")
            room = (
                self.model.config.max_target_positions // 2 - 1
            )  # Whisper keeps prompts to half the context
            prompt_ids = prompt_ids[-room:].to(self.model.device)
            kwargs["prompt_ids"] = prompt_ids
            budget = self.model.config.max_target_positions - len(prompt_ids) - _PROMPT_RESERVE
            kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], budget)
        return kwargs

    def _run(
        self, audios: list[np.ndarray], options: TranscribeOptions, language: str
    ) -> list[dict[str, Any]]:
        inputs = [{"raw": audio, "sampling_rate": SAMPLE_RATE} for audio in audios]
        return self.pipe(
            inputs,
            chunk_length_s=self.settings.chunk_length_s,
            stride_length_s=self.stride_s,
            batch_size=self.settings.batch_size,
            return_timestamps="word" if options.word_timestamps else True,
            generate_kwargs=self._generate_kwargs(options, language),
        )

    def _resolve_language(self, audio: np.ndarray, options: TranscribeOptions) -> str:
        if options.language:
            return language_code(options.language)
        return self.detect_language(audio)[0]

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, progress: ProgressCallback | None = None
    ) -> Transcript:
        language = self._resolve_language(audio, options)
        self._windows_done = 0
        if progress is not None:
            self._progress = (
                progress,
                count_windows(len(audio), self.settings.chunk_length_s, self.stride_s),
            )
        try:
            output = self._run([audio], options, language)[0]
        finally:
            self._progress = None
        if progress is not None:
            progress(1.0)
        return self._to_transcript(output, audio, options, language)

    def transcribe_many(self, requests: Sequence[tuple[np.ndarray, TranscribeOptions]]) -> list[Transcript]:
        """Transcribe several requests; those that decode alike share forward passes over their windows."""
        unknown = [i for i, (_, options) in enumerate(requests) if not options.language]
        detected = dict(zip(unknown, self.detect_languages([requests[i][0] for i in unknown]), strict=True))
        languages = [
            language_code(options.language) if options.language else detected[i][0]
            for i, (_, options) in enumerate(requests)
        ]
        groups: dict[tuple, list[int]] = {}
        for i, (_, options) in enumerate(requests):
            groups.setdefault((options, languages[i]), []).append(i)
        results: list[Transcript | None] = [None] * len(requests)
        for (options, language), indices in groups.items():
            outputs = self._run([requests[i][0] for i in indices], options, language)
            for i, output in zip(indices, outputs, strict=True):
                results[i] = self._to_transcript(output, requests[i][0], options, language)
        return [r for r in results if r is not None]

    def _to_transcript(
        self, output: dict[str, Any], audio: np.ndarray, options: TranscribeOptions, language: str
    ) -> Transcript:
        duration = len(audio) / SAMPLE_RATE
        chunks = output.get("chunks", [])
        if options.word_timestamps:
            segments = segments_from_words(chunks, duration)
        else:
            segments = segments_from_chunks(chunks, duration)
        return Transcript(
            text=output["text"].strip(),
            language=language,
            duration=duration,
            segments=segments,
            task=options.task,
        )
