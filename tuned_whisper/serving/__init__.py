"""Serving: the OpenAI-compatible HTTP API (plain FastAPI), mounted by the Ray Serve ingress."""

from tuned_whisper.serving.api import (
    ApiSettings,
    EngineBackend,
    TranscribeBackend,
    create_api_router,
    create_app,
)
from tuned_whisper.serving.errors import ApiError, install_error_handlers

__all__ = [
    "ApiError",
    "ApiSettings",
    "EngineBackend",
    "TranscribeBackend",
    "create_api_router",
    "create_app",
    "install_error_handlers",
]
