"""The Transformers engine: `pipeline("automatic-speech-recognition")` over a HF Whisper checkpoint.

Long audio is decoded in 30 s windows with overlapping strides (`engine/windows.py`) and timestamps on:
without timestamps Whisper may end a window after one token and the merge then drops it whole. Windows go
through the pipeline's `forward` in batches; requests that decode alike share batches.
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
from tuned_whisper.engine.base import ModelInfo, ProgressCallback
from tuned_whisper.engine.segments import segments_from_chunks, segments_from_words
from tuned_whisper.engine.windows import Window, WindowOutput, merge_windows, split_windows
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


class TransformersTranscriber:
    """Whisper through the Transformers ASR pipeline; CUDA fp16 when a GPU is there, else CPU fp32."""

    def __init__(self, checkpoint: str | Path, engine: EngineSettings, adapter: Path | None = None) -> None:
        import torch
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
        self.pipe = self._pipeline(checkpoint, adapter, dtype, device)
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
            adapter=str(adapter) if adapter else None,
        )
        self._progress: tuple[ProgressCallback, int] | None = None

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

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersTranscriber:
        return cls(settings.checkpoint, settings.engine, settings.adapter)

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

    def decode_windows(
        self, windows: Sequence[Window], options: TranscribeOptions, language: str
    ) -> list[WindowOutput]:
        """Decode windows that share options, `batch_size` at a time, in order."""
        outputs: list[WindowOutput] = []
        for start in range(0, len(windows), self.settings.batch_size):
            batch = windows[start : start + self.settings.batch_size]
            outputs.extend(self._decode_batch(batch, options, language))
            if self._progress is not None:
                callback, total = self._progress
                callback(min(1.0, len(outputs) / total))
        return outputs

    def _decode_batch(
        self, windows: Sequence[Window], options: TranscribeOptions, language: str
    ) -> list[WindowOutput]:
        features = self.pipe.feature_extractor(
            [w.samples for w in windows],
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            return_attention_mask=True,
        )
        model_inputs = {
            "input_features": features.input_features.to(self.model.dtype),
            "attention_mask": features.attention_mask,
            "stride": [w.stride for w in windows],
            "is_last": [w.stride[2] == 0 for w in windows],
        }
        result = self.pipe.forward(
            model_inputs,
            return_timestamps="word" if options.word_timestamps else True,
            **self._generate_kwargs(options, language),
        )
        times = result.get("token_timestamps")
        return [
            WindowOutput(
                tokens=result["tokens"][i].numpy(),
                stride=window.stride,
                token_timestamps=None if times is None else times[i].float().numpy(),
            )
            for i, window in enumerate(windows)
        ]

    def _resolve_language(self, audio: np.ndarray, options: TranscribeOptions) -> str:
        if options.language:
            return language_code(options.language)
        return self.detect_language(audio)[0]

    def split(self, audio: np.ndarray) -> list[Window]:
        """The 30 s windows (with strides) this engine decodes `audio` in."""
        return split_windows(audio, self.settings.chunk_length_s, self.stride_s)

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, progress: ProgressCallback | None = None
    ) -> Transcript:
        language = self._resolve_language(audio, options)
        windows = self.split(audio)
        self._progress = None if progress is None else (progress, len(windows))
        try:
            outputs = self.decode_windows(windows, options, language)
        finally:
            self._progress = None
        return self.merge(outputs, len(audio), options, language)

    def transcribe_many(self, requests: Sequence[tuple[np.ndarray, TranscribeOptions]]) -> list[Transcript]:
        """Transcribe several requests; windows of requests that decode alike share forward passes."""
        unknown = [i for i, (_, options) in enumerate(requests) if not options.language]
        detected = dict(zip(unknown, self.detect_languages([requests[i][0] for i in unknown]), strict=True))
        groups: dict[tuple[TranscribeOptions, str], list[int]] = {}
        for i, (_, options) in enumerate(requests):
            language = language_code(options.language) if options.language else detected[i][0]
            groups.setdefault((options, language), []).append(i)
        results: dict[int, Transcript] = {}
        for (options, language), indices in groups.items():
            windows = {i: self.split(requests[i][0]) for i in indices}
            decoded = iter(self.decode_windows([w for i in indices for w in windows[i]], options, language))
            for i in indices:
                mine = [next(decoded) for _ in windows[i]]
                results[i] = self.merge(mine, len(requests[i][0]), options, language)
        return [results[i] for i in range(len(requests))]

    def merge(
        self, outputs: Sequence[WindowOutput], n_samples: int, options: TranscribeOptions, language: str
    ) -> Transcript:
        """One request's decoded windows as a `Transcript`."""
        return build_transcript(self.tokenizer, outputs, n_samples, options, language)


def build_transcript(
    tokenizer: Any, outputs: Sequence[WindowOutput], n_samples: int, options: TranscribeOptions, language: str
) -> Transcript:
    """Merge decoded windows into a `Transcript`; needs only the tokenizer, not the model."""
    text, chunks = merge_windows(tokenizer, outputs, word_timestamps=options.word_timestamps)
    duration = n_samples / SAMPLE_RATE
    segments = (
        segments_from_words(chunks, duration)
        if options.word_timestamps
        else segments_from_chunks(chunks, duration)
    )
    return Transcript(
        text=text.strip(), language=language, duration=duration, segments=segments, task=options.task
    )
