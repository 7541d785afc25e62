"""One settings object for the CLI, the engine and the server; every field maps to a `TW_*` env var."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class EngineSettings(BaseModel):
    """How the model runs (env vars `TW_ENGINE__<FIELD>`)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` uses CUDA with fp16 when a GPU is visible, else the CPU in fp32."""
    num_threads: int | None = None
    """Torch CPU threads; default: all cores this process may use."""
    batch_size: int = Field(default=8, ge=1)
    """30 s windows decoded in one forward pass."""
    chunk_length_s: float = Field(default=30.0, gt=0, le=30.0)
    """Window length for long audio; Whisper sees at most 30 s at a time."""
    stride_length_s: float | None = None
    """Overlap on each side of a window; default chunk_length_s / 6 (5 s), as transformers does."""
    num_beams: int = Field(default=1, ge=1)
    """1 is greedy decoding, like faster-whisper's `beam_size=1`."""
    max_new_tokens: int = Field(default=440, ge=1, le=444)
    """Tokens per 30 s window; Whisper's decoder holds 448 positions, the prompt takes up to 4."""


class ApiSettings(BaseModel):
    """How the HTTP API behaves; nests into `Settings` like `EngineSettings` does."""

    max_upload_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    """Largest request body accepted (100 MiB); larger uploads get a 413 while they stream in."""
    api_key: str | None = Field(default=None, repr=False)
    """When set, every `/v1` request must send `Authorization: Bearer <api_key>`."""
    model_id: str | None = None
    """The id `/v1/models` reports; default: the backend's (the checkpoint directory's name)."""
    max_audio_s: float = Field(default=4 * 3600, gt=0)
    """Longest audio accepted, in seconds; longer uploads get a 400 with code `too_long`."""


class ServeSettings(BaseModel):
    """How the Ray Serve app runs (env vars `TW_SERVE__<FIELD>`; Cloud Run's `PORT` is honoured too)."""

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    replicas: int = Field(default=1, ge=1)
    """Model replicas; with `max_replicas` above it, the number Serve autoscaling starts from."""
    max_replicas: int | None = Field(default=None, ge=1)
    """Enables autoscaling on ongoing requests between `replicas` and this."""
    target_ongoing_requests: float = Field(default=16, gt=0)
    """Windows in flight per model replica that autoscaling aims for."""
    max_batch_size: int = Field(default=8, ge=1)
    """30 s windows from any requests decoded in one forward pass (live-tunable via user_config)."""
    batch_wait_s: float = Field(default=0.1, ge=0)
    """How long a replica waits to fill a batch."""
    model_num_cpus: float = Field(default=1.0, gt=0)
    """Ray CPUs reserved per model replica (fractional on small machines)."""
    model_num_gpus: float | None = None
    """GPUs per model replica; default: 1 when the machine has a GPU, else 0."""
    ingress_num_cpus: float = Field(default=0.25, gt=0)
    """Ray CPUs reserved per ingress replica (decoding audio with ffmpeg, the UI)."""
    windows_in_flight: int = Field(default=16, ge=1)
    """Windows of one request sent to the model at once, so long files do not starve short ones."""
    ui: bool = True
    """Mount the Gradio UI at `/`."""
    graceful_shutdown_s: float = Field(default=30, ge=0)
    """On shutdown, how long replicas wait for in-flight requests to finish."""


class Settings(BaseSettings):
    """tuned-whisper settings. Defaults work offline on the embedded checkpoint."""

    model_config = SettingsConfigDict(env_prefix="TW_", env_nested_delimiter="__", extra="ignore")

    checkpoint: Path = PROJECT_ROOT / "checkpoint"
    """Hugging Face Whisper checkpoint directory (or hub id) to transcribe with."""
    adapter: Path | None = None
    """A LoRA adapter directory from `finetune/train.py`, merged onto `checkpoint` at load time."""
    max_audio_s: float = Field(default=4 * 3600, gt=0)
    """Longest audio accepted, in seconds; longer input is refused before it is decoded in full."""
    engine: EngineSettings = EngineSettings()
    api: ApiSettings = ApiSettings()
    serve: ServeSettings = ServeSettings()
