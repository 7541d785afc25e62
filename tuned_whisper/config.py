"""One settings object for the CLI, the engine and the server; every field maps to a `TW_*` env var."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class EngineSettings(BaseModel):
    """How the model runs (env vars `TW_ENGINE__<FIELD>`)."""

    backend: Literal["auto", "transformers", "ctranslate2"] = "auto"
    """Who runs the model: the card's Transformers pipeline or CTranslate2. `auto`: CTranslate2 int8 on
    CPU (2-3x faster there), Transformers fp16 on CUDA (until a GPU benchmark says otherwise)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` uses CUDA when a GPU is visible, else the CPU."""
    quantization: Literal["auto", "int8", "int8_float16", "int8_float32", "float16", "float32"] = "auto"
    """CTranslate2 weights and compute type; `auto`: int8 on CPU, float16 on CUDA. Transformers runs
    fp16 on CUDA and fp32 on CPU whatever this says."""
    ct2_cache_dir: Path = PROJECT_ROOT / ".cache" / "ct2"
    """Where checkpoints exported to CTranslate2 are kept, keyed by source checkpoint and quantization."""
    num_threads: int | None = None
    """CPU threads for the model; default: all cores this process may use."""
    batch_size: int = Field(default=8, ge=1)
    """30 s windows decoded in one forward pass."""
    chunk_length_s: float = Field(default=30.0, gt=0, le=30.0)
    """Window length for long audio; Whisper sees at most 30 s at a time."""
    cut_at_pauses: bool = False
    """Cut long audio into windows that do not overlap, each ending at the quietest moment of its last
    5 s; a window Whisper ends early is read on from there. Fewer windows and a lower WER in one process
    (benchmarks/results-load.md), but a second round per long file when served, so off by default; off:
    transformers' overlapping strides (`stride_length_s`)."""
    stride_length_s: float | None = None
    """Overlap on each side of a window when not `cut_at_pauses`; default chunk_length_s / 6 (5 s)."""
    num_beams: int = Field(default=1, ge=1)
    """1 is greedy decoding, like faster-whisper's `beam_size=1`."""
    max_new_tokens: int = Field(default=440, ge=1, le=444)
    """Tokens per 30 s window; Whisper's decoder holds 448 positions, the prompt takes up to 4."""
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    """Whisper's fallback: a window that fails the thresholds below is decoded again at the next one.
    A request's own `temperature` above 0 replaces the first."""
    compression_ratio_threshold: float | None = 2.4
    """A window whose text gzips better than this (repetition loops) is decoded again; None: off."""
    log_prob_threshold: float | None = -1.0
    """A window whose average token log-probability is below this is decoded again; None: off."""
    no_speech_threshold: float | None = 0.6
    """A window with no-speech probability above this and log-probability below `log_prob_threshold`
    yields no text (Whisper's silence rule); None: off."""
    vad_filter: bool = True
    """Skip non-speech (Silero VAD, weights from the faster-whisper wheel) before decoding files."""
    pack_short_audio: bool = True
    """Decode several short clips of one caller in one shared 30 s window, apart by `pack_gap_s`."""
    pack_gap_s: float = Field(default=3.0, ge=0.5, le=10)
    """Silence between packed clips; 1.5 s measured worse than 3 s on real speech."""
    pack_max_clip_s: float = Field(default=12.0, gt=0, le=25)
    """Only clips (after VAD) up to this long are packed."""


class ApiSettings(BaseModel):
    """How the HTTP API behaves; nests into `Settings` like `EngineSettings` does."""

    max_upload_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    """Largest request body accepted (100 MiB); larger uploads get a 413 while they stream in."""
    api_key: str | None = Field(default=None, repr=False)
    """When set, every `/v1` request must send `Authorization: Bearer <api_key>`."""
    extra_api_keys: tuple[str, ...] = Field(default=(), repr=False)
    """More accepted keys, one per client (JSON list in `TW_API__EXTRA_API_KEYS`); each key is a caller."""
    api_keys_file: Path | None = None
    """More keys from a file, one per line (blank lines and `#` comments skipped), e.g. a mounted secret;
    read again when it changes, so keys rotate without a restart."""
    model_id: str | None = None
    """The id `/v1/models` reports; default: the backend's (the checkpoint directory's name)."""
    max_audio_s: float = Field(default=4 * 3600, gt=0)
    """Longest audio accepted, in seconds; longer uploads get a 400 with code `too_long`."""
    max_audio_in_flight_s: float = Field(default=8 * 3600, gt=0)
    """Decoded audio one ingress holds for requests at once (8 h, about 1.8 GB); past it a new request
    gets a 429 with `Retry-After`."""
    max_requests_per_client: int = Field(default=64, ge=1)
    """Transcription requests one client may have in flight at once (a client: its API key; with no
    keys, its address); one more gets a 429 with `Retry-After`."""
    concurrent_decodes: int = Field(default=2, ge=1)
    """Uploads decoded (ffmpeg) at once per ingress; more wait their turn."""
    model_uploads: bool = False
    """Offer `POST /v1/models` (an adapter archive becomes a model) and `DELETE /v1/models/{id}`; only
    with an API key set, since whoever holds one can then change what the service serves."""
    cors_origins: tuple[str, ...] = ()
    """Web origins whose browser pages may call the API (JSON list in `TW_API__CORS_ORIGINS`, `["*"]`
    for any); empty: no cross-origin access (browsers refuse other sites' pages)."""

    @field_validator("api_keys_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no API keys file at {path}")
        return path

    @property
    def guarded(self) -> bool:
        """Whether callers must present a key (some key source is configured)."""
        return bool(self.api_key or self.extra_api_keys or self.api_keys_file)

    def keys(self) -> list[bytes]:
        """Every accepted key (as bytes, for constant-time comparison); empty: the server is open."""
        listed = [self.api_key, *self.extra_api_keys]
        if self.api_keys_file is not None:
            stat = self.api_keys_file.stat()
            listed += _keys_in(self.api_keys_file, stat.st_mtime_ns, stat.st_size)
        return [key.encode() for key in listed if key]


@functools.lru_cache(maxsize=8)
def _keys_in(path: Path, mtime_ns: int, size: int) -> tuple[str, ...]:
    """The keys a keys file lists; cached until the file changes (its mtime or size)."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


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
    max_batch_size: int = Field(default=16, ge=1)
    """Windows of any requests per batch (live-tunable via user_config); a short clip that will be packed
    counts for its share of one, so a batch of short clips packs into this many windows."""
    batch_wait_s: float = Field(default=0.0, ge=0)
    """How long an idle replica waits for more jobs before it starts a batch (under load, jobs that
    arrive during a forward pass form the next batch anyway)."""
    model_num_cpus: float = Field(default=1.0, gt=0)
    """Ray CPUs reserved per model replica (fractional on small machines)."""
    model_num_gpus: float | None = None
    """GPUs per model replica; default: 1 when the machine has a GPU, else 0."""
    ingress_num_cpus: float = Field(default=0.25, gt=0)
    """Ray CPUs reserved per ingress replica (decoding audio with ffmpeg, the UI)."""
    pack_across_callers: bool = False
    """Let audio of different callers (API keys; without keys, requests) share a packed window."""
    windows_in_flight: int = Field(default=16, ge=1)
    """Windows of one request sent to the model at once, so long files do not starve short ones."""
    window_timeout_s: float = Field(default=600, gt=0)
    """Longest wait for one 30 s window from the model replicas, queueing included; past it the request
    fails with a 503 (`model_timeout`) instead of hanging on a stuck replica."""
    ui: bool = True
    """Mount the Gradio UI at `/`."""
    graceful_shutdown_s: float = Field(default=30, ge=0)
    """On shutdown, how long replicas wait for in-flight requests to finish."""
    log_encoding: Literal["TEXT", "JSON"] = "TEXT"
    """`JSON`: every log line of the driver, the ingress and the model replicas is one JSON object on
    stdout, with the request id (`request_id`) on every line a request causes (Cloud Run, Kubernetes)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class RealtimeSettings(BaseModel):
    """Live sessions on `/v1/realtime` (env vars `TW_REALTIME__<FIELD>`); limits are per ingress replica."""

    max_sessions: int = Field(default=32, ge=1)
    """Open sessions per ingress replica; one more is told to retry later (close code 1013)."""
    max_sessions_per_client: int = Field(default=32, ge=1)
    """Open sessions one client may hold (its API key or client secret; with no keys, its address)."""
    max_session_s: float = Field(default=3600, gt=0)
    """Longest session; then an error event and close code 1008."""
    idle_timeout_s: float = Field(default=60, gt=0)
    """A session with no message for this long is closed (code 1001)."""
    max_buffer_s: float = Field(default=120, gt=0)
    """Uncommitted audio held without server VAD; past it appends get an error until a commit."""
    max_turn_s: float = Field(default=28, ge=5, le=30)
    """A turn this long is cut at its quietest moment and continues as the next turn."""
    partial_interval_s: float = Field(default=1.0, gt=0)
    """How often an open turn is re-decoded for partial text (best-effort)."""
    partial_slots: int = Field(default=2, ge=0)
    """Partial decodes at once per ingress replica (0: none); beyond this, or while any session's final is
    being decoded, partials are skipped (finals first)."""
    max_message_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    """Largest client message (base64 audio of one append)."""


class JobsSettings(BaseModel):
    """Asynchronous transcription jobs (env vars `TW_JOBS__<FIELD>`): uploads kept on disk, state in a
    database, run by the ingress replicas in the background at a lower priority than interactive work."""

    enabled: bool = True
    """Offer `/v1/audio/transcriptions/jobs` (and translations) and run queued jobs."""
    data_dir: Path = PROJECT_ROOT / ".jobs"
    """Uploaded audio and finished results (on Cloud Run: a Cloud Storage volume mount)."""
    database_url: str | None = None
    """`postgresql://...` for a store several instances share; default: SQLite in `data_dir`."""
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    """Largest job upload (2 GiB), streamed to disk as it arrives."""
    max_audio_s: float = Field(default=24 * 3600, gt=0)
    """Longest audio a job may hold (24 h)."""
    lease_s: float = Field(default=30, gt=1)
    """A running job's lease; its worker renews it every third of this. A job whose lease runs out (its
    replica died) is queued again."""
    max_attempts: int = Field(default=3, ge=1)
    """A job that fails this many times (or whose worker is lost this often) is `failed`."""
    workers: int = Field(default=1, ge=1)
    """Jobs run at once per job-runner replica."""
    runners: int = Field(default=1, ge=1)
    """Replicas of the `JobRunner` deployment (the ingress only stores jobs; the runners run them)."""
    runner_num_cpus: float = Field(default=0.1, gt=0)
    """Ray CPUs reserved per job runner: it decodes a job's file with ffmpeg and merges its windows; the
    model replicas do the decoding."""
    poll_s: float = Field(default=1.0, gt=0)
    """How often an idle worker looks for queued jobs."""
    callback_hosts: tuple[str, ...] = ()
    """Hosts a `callback_url` may name (`.example.com` also allows its subdomains); empty: any host."""


class Settings(BaseSettings):
    """tuned-whisper settings. Defaults work offline on the embedded checkpoint."""

    model_config = SettingsConfigDict(env_prefix="TW_", env_nested_delimiter="__", extra="ignore")

    checkpoint: Path = PROJECT_ROOT / "checkpoint"
    """Hugging Face Whisper checkpoint directory (or hub id) to transcribe with."""
    adapter: Path | None = None
    """A LoRA adapter directory from `finetune/train.py`, merged onto `checkpoint` at load time."""
    max_audio_s: float = Field(default=4 * 3600, gt=0)
    """Longest audio accepted, in seconds; longer input is refused before it is decoded in full."""
    adapters_dir: Path = PROJECT_ROOT / "adapters"
    """The adapter registry: each `<name>/` holding a `finetune/train.py` adapter is served as model
    `<name>` (read again when the directory changes; a cluster's nodes must share it)."""
    adapters_force: tuple[str, ...] = ()
    """Adapters offered although their recorded dev WER is worse than their base's (JSON list)."""
    max_loaded_adapters: int = Field(default=4, ge=1)
    """Adapters a model replica keeps loaded; the least recently used is dropped for a new one."""
    engine: EngineSettings = EngineSettings()
    api: ApiSettings = ApiSettings()
    serve: ServeSettings = ServeSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    jobs: JobsSettings = JobsSettings()
