"""Transcription engines behind one protocol; callers use `load_transcriber` and `Transcriber`."""

from tuned_whisper.engine.base import ModelInfo, ProgressCallback, Transcriber

__all__ = ["ModelInfo", "ProgressCallback", "Transcriber", "load_transcriber"]


def load_transcriber(settings: object) -> Transcriber:
    """The Transformers pipeline engine over `settings.checkpoint` (the only backend so far)."""
    from tuned_whisper.engine.transformers_engine import TransformersTranscriber

    return TransformersTranscriber.from_settings(settings)  # type: ignore[arg-type]
