"""Transcription engines: backends behind `WindowDecoder`, the long-form path, and `load_transcriber`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuned_whisper.engine.base import ModelInfo, ProgressCallback, Transcriber, WindowDecoder

if TYPE_CHECKING:
    from tuned_whisper.config import Settings
    from tuned_whisper.engine.local import Engine

__all__ = [
    "ModelInfo",
    "ProgressCallback",
    "Transcriber",
    "WindowDecoder",
    "load_decoder",
    "load_models",
    "load_transcriber",
]


def resolve_backend(requested: str, device: str) -> str:
    """`auto`: CTranslate2 on CPU; on CUDA the Transformers backend (fp16) until a GPU run says otherwise."""
    if requested != "auto":
        return requested
    if device == "cpu":
        return "ctranslate2"
    from tuned_whisper.engine.ctranslate2_engine import ct2_cuda  # not torch: a CPU replica stays without it

    return "transformers" if ct2_cuda() else "ctranslate2"


def load_decoder(settings: Settings) -> WindowDecoder:
    """The backend `settings.engine.backend` names, over `settings.checkpoint` (and adapter)."""
    engine = settings.engine
    if resolve_backend(engine.backend, engine.device) == "ctranslate2":
        from tuned_whisper.engine.ctranslate2_engine import CTranslate2Decoder

        return CTranslate2Decoder(settings.checkpoint, engine, settings.adapter)
    from tuned_whisper.engine.transformers_engine import TransformersDecoder

    return TransformersDecoder(settings.checkpoint, engine, settings.adapter)


def load_models(settings: Settings) -> WindowDecoder:
    """The configured backend over the base checkpoint, plus the registry's adapters on first use."""
    from tuned_whisper.adapters import AdapterRegistry
    from tuned_whisper.engine.multi import MultiDecoder

    registry = AdapterRegistry(settings.adapters_dir, settings.adapters_force)

    def resolve(name: str) -> Path | None:
        adapter = registry.get(name)
        return adapter.path if adapter is not None else None

    def load(path: Path) -> WindowDecoder:
        return load_decoder(settings.model_copy(update={"adapter": path}))

    return MultiDecoder(load_decoder(settings), resolve, load, settings.max_loaded_adapters)


def load_transcriber(settings: Settings) -> Engine:
    """A whole-file `Transcriber` over the configured backend (and the registry's adapters)."""
    from tuned_whisper.engine.local import Engine

    return Engine(load_models(settings), settings.engine)
