"""The fast backend: CTranslate2's Whisper over an export of the HF checkpoint (int8 on CPU).

Windows of any requests are stacked into one `encode`; language detection, generation (with the
no-speech probability and scores) and word alignment reuse that encoder output. faster-whisper's
`WhisperModel` is not used: it decodes one request at a time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuned_whisper.engine.base import ModelInfo
from tuned_whisper.engine.features import HOP, log_mel
from tuned_whisper.engine.quality import compression_ratio
from tuned_whisper.engine.transformers_engine import available_cores, vocabulary
from tuned_whisper.engine.windows import WINDOW_SAMPLES, Decoded
from tuned_whisper.types import TranscribeOptions

if TYPE_CHECKING:
    from tuned_whisper.config import EngineSettings

MAX_LENGTH = 448  # decoder positions
SEED = 0
CPU_STACK = 4


def _storage(array: np.ndarray) -> Any:
    import ctranslate2

    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array, dtype=np.float32))


def default_quantization(device: str) -> str:
    return "float16" if device == "cuda" else "int8"


def resolve_quantization(engine: EngineSettings, device: str) -> str:
    return engine.quantization if engine.quantization != "auto" else default_quantization(device)


def prepare_export(checkpoint: Path, engine: EngineSettings, adapter: Path | None = None) -> Path:
    """Make the export the replicas will load, before they start (so that they never import torch)."""
    from tuned_whisper.ct2_export import cached_export

    quantization = resolve_quantization(engine, ct2_device(engine.device))
    return cached_export(Path(checkpoint), quantization, engine.ct2_cache_dir, adapter)


def ct2_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if ct2_cuda() else "cpu"
    if requested == "cuda" and not ct2_cuda():
        raise RuntimeError("device 'cuda' was asked for but CTranslate2 sees no GPU; use --device cpu")
    return requested


def ct2_cuda() -> bool:
    """Whether CTranslate2 sees a GPU (asked without importing torch)."""
    import ctranslate2

    try:
        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # a CPU-only build
        return False


class CTranslate2Decoder:
    """Whisper on CTranslate2; the tokenizer (read with `tokenizers`) and mel features are the HF
    checkpoint's."""

    def __init__(self, checkpoint: str | Path, engine: EngineSettings, adapter: Path | None = None) -> None:
        import ctranslate2

        from tuned_whisper.ct2_export import cached_export
        from tuned_whisper.engine.tokens import WhisperTokens

        device = ct2_device(engine.device)
        quantization = resolve_quantization(engine, device)
        checkpoint = Path(checkpoint)
        model_dir = cached_export(checkpoint, quantization, engine.ct2_cache_dir, adapter)
        threads = engine.num_threads or available_cores()
        self.model = ctranslate2.models.Whisper(
            str(model_dir), device=device, compute_type=quantization, intra_threads=threads, inter_threads=1
        )
        self.settings = engine
        self.tokenizer = WhisperTokens(checkpoint)  # no Transformers in a model replica
        # numpy log-mel (no torch in this process): equal to the checkpoint's extractor to 1e-5
        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        self.mels = int(config.get("num_mel_bins", 80))
        self.vocab = vocabulary(self.tokenizer)
        self.is_multilingual = bool(self.model.is_multilingual)
        self.sot = self.tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
        self.model_dir = model_dir
        self._encoded: list[tuple[np.ndarray, np.ndarray]] = []  # (window, its encoder output)
        self.encoder_runs = 0
        self.info = ModelInfo(
            checkpoint=str(checkpoint),
            device=device,
            dtype=quantization,
            is_multilingual=self.is_multilingual,
            adapter=str(adapter) if adapter else None,
            backend="ctranslate2",
        )

    def _encode(self, windows: Sequence[np.ndarray], *, keep: bool = True) -> Any:
        if self.info.device != "cpu":
            return self.model.encode(_storage(np.stack([self._mel(w) for w in windows])), to_cpu=False)
        # One window at a time on a CPU: stacking buys the encoder nothing there, and each window's
        # attention holds ~70 MB; the outputs are stacked so that the decoder still runs them as a batch.
        # The encoder is most of a window's cost, so `decode` keeps the outputs of its call's windows: a
        # window decoded again at the next temperature (the same array, not an equal one) is not encoded
        # again. `keep=False` (language detection, a subset for alignment) only reads what is kept.
        kept = {id(w): out for w, out in self._encoded if any(w is x for x in windows)}
        encoded = [
            kept[id(w)]
            if id(w) in kept
            else np.asarray(self.model.encode(_storage(self._mel(w)[np.newaxis]), to_cpu=True))
            for w in windows
        ]
        self.encoder_runs += sum(id(w) not in kept for w in windows)
        if keep:
            self._encoded += [(w, out) for w, out in zip(windows, encoded, strict=True) if id(w) not in kept]
        return _storage(np.concatenate(encoded))

    def _mel(self, window: np.ndarray) -> np.ndarray:
        """Log-mel of the window padded with silence to 30 s, as Transformers computes it."""
        padded = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        samples = np.asarray(window, dtype=np.float32)[:WINDOW_SAMPLES]
        padded[: samples.size] = samples
        return log_mel(padded, self.mels)

    def _languages(self, encoded: Any, count: int) -> list[tuple[str, float]]:
        if not self.is_multilingual:
            return [("en", 1.0)] * count
        return [
            (ranked[0][0].strip("<|>"), float(ranked[0][1])) for ranked in self.model.detect_language(encoded)
        ]

    def detect_languages(self, heads: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        if not heads:
            return []
        return self._languages(self._encode([h[:WINDOW_SAMPLES] for h in heads], keep=False), len(heads))

    def _prompt(self, language: str, options: TranscribeOptions) -> list[int]:
        prompt: list[int] = []
        if options.initial_prompt:
            ids = self.tokenizer.get_prompt_ids(options.initial_prompt).tolist()
            prompt += [ids[0], *ids[1:][-(MAX_LENGTH // 2 - 2) :]]  # Whisper keeps half the context
        prompt.append(self.sot)
        if self.is_multilingual:
            prompt.append(self.tokenizer.convert_tokens_to_ids(f"<|{language}|>"))
            prompt.append(self.tokenizer.convert_tokens_to_ids(f"<|{options.task}|>"))
        return prompt

    def decode(
        self,
        windows: Sequence[np.ndarray],
        languages: Sequence[str | None],
        options: TranscribeOptions,
        temperature: float,
    ) -> list[Decoded]:
        """On a CPU, `CPU_STACK` windows at a time: stacking more buys no speed there (the encoder is
        compute-bound) and only holds more activations; a GPU takes the whole batch at once."""
        step = CPU_STACK if self.info.device == "cpu" else max(len(windows), 1)
        # only this call's windows stay encoded: the next temperature may decode some of them again
        self._encoded = [(w, out) for w, out in self._encoded if any(w is x for x in windows)]
        out: list[Decoded] = []
        for start in range(0, len(windows), step):
            part = slice(start, start + step)
            out += self._decode(windows[part], languages[part], options, temperature)
        return out

    def _decode(
        self,
        windows: Sequence[np.ndarray],
        languages: Sequence[str | None],
        options: TranscribeOptions,
        temperature: float,
    ) -> list[Decoded]:
        import ctranslate2

        if not windows:
            return []
        encoded = self._encode(windows)
        known = [lang for lang in languages if lang is not None]
        detected = self._languages(encoded, len(windows)) if len(known) < len(windows) else []
        chosen = [lang or detected[i][0] for i, lang in enumerate(languages)]
        prompts = [self._prompt(lang, options) for lang in chosen]
        if temperature > 0:
            ctranslate2.set_random_seed(SEED)  # seeded; CTranslate2's sampling still varies between calls
        max_length = min(MAX_LENGTH, max(map(len, prompts)) + self.settings.max_new_tokens)
        results = self.model.generate(
            encoded,
            prompts,
            beam_size=self.settings.num_beams,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            sampling_topk=0 if temperature > 0 else 1,
            sampling_temperature=temperature if temperature > 0 else 1.0,
        )
        rows = [[t for t in r.sequences_ids[0] if t != self.vocab.eot] for r in results]
        times = self._word_times(encoded, windows, rows, chosen, options) if options.word_timestamps else None
        out = []
        for i, (result, row) in enumerate(zip(results, rows, strict=True)):
            # CTranslate2 scores are length-normalised: back to the sum, then Whisper's average
            total = result.scores[0] * max(len(row), 1)
            out.append(
                Decoded(
                    tokens=np.asarray(row, dtype=np.int64),
                    avg_logprob=total / (len(row) + 1),
                    no_speech_prob=float(result.no_speech_prob),
                    temperature=temperature,
                    language=chosen[i],
                    compression_ratio=compression_ratio(self.tokenizer.decode(row, skip_special_tokens=True)),
                    token_timestamps=None if times is None else times[i],
                )
            )
        return out

    def _word_times(
        self,
        encoded: Any,
        windows: Sequence[np.ndarray],
        rows: list[list[int]],
        languages: list[str],
        options: TranscribeOptions,
    ) -> list[np.ndarray]:
        """A start time (seconds from the window's start) for every token, from cross-attention."""
        times = [np.zeros(len(row), dtype=np.float32) for row in rows]
        texts = [[t for t in row if not self.vocab.is_timestamp(t)] for row in rows]
        frames = [max(1, min(len(w), WINDOW_SAMPLES) // HOP) for w in windows]
        for language in set(languages):
            chosen = [i for i, lang in enumerate(languages) if lang == language and texts[i]]
            if not chosen:
                continue
            start = self._prompt(language, dataclasses.replace(options, initial_prompt=None))
            # align takes one start sequence per call: windows of other languages are encoded again
            subset = (
                encoded
                if len(chosen) == len(windows)
                else self._encode([windows[i] for i in chosen], keep=False)
            )
            aligned = self.model.align(subset, start, [texts[i] for i in chosen], [frames[i] for i in chosen])
            for i, result in zip(chosen, aligned, strict=True):
                first: dict[int, int] = {}
                for text_index, time_index in result.alignments:
                    first.setdefault(int(text_index), int(time_index))
                last = max((int(t) for _, t in result.alignments), default=0)
                # a token's time is where it ends (the next one starts), as Transformers reports it
                text_times = iter([first.get(k + 1, last) * 0.02 for k in range(len(texts[i]))])
                for j, token in enumerate(rows[i]):
                    if self.vocab.is_timestamp(token):
                        times[i][j] = (token - self.vocab.timestamp_begin) * 0.02
                    else:
                        times[i][j] = next(text_times, 0.0)
        return times
