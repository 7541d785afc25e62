"""The Serve application: `GradioServer` (ingress) bound to `WhisperASR` (model) and, with jobs on, to the
`JobRunner` deployment that runs them through the same model; configured from Settings.

`app` is what `serve build tuned_whisper.serving.app:app` and `deploy/serve_config.yaml` refer to;
`build_app(settings)` is what `serve_predictor_script.py` runs.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from tuned_whisper.config import Settings
from tuned_whisper.serving.ingress import GradioServer
from tuned_whisper.serving.job_runner import JobRunner
from tuned_whisper.serving.logs import logging_config
from tuned_whisper.serving.model import WhisperASR

APP_NAME = "tuned-whisper"


def _replicas(settings: Settings) -> dict[str, Any]:
    serve_settings = settings.serve
    if serve_settings.max_replicas and serve_settings.max_replicas > serve_settings.replicas:
        return {
            "autoscaling_config": {
                "min_replicas": serve_settings.replicas,
                "initial_replicas": serve_settings.replicas,
                "max_replicas": serve_settings.max_replicas,
                "target_ongoing_requests": serve_settings.target_ongoing_requests,
            }
        }
    return {"num_replicas": serve_settings.replicas}


def _model_gpus(settings: Settings, gpus_available: float) -> float:
    if settings.serve.model_num_gpus is not None:
        return settings.serve.model_num_gpus
    return 1.0 if gpus_available >= 1 and settings.engine.device != "cpu" else 0.0


def build_app(settings: Settings, *, gpus_available: float = 0.0) -> Application:
    """The bound application; `gpus_available` (from the Ray cluster) decides `num_gpus` unless set."""
    s = settings.serve
    model = serve.deployment(
        name="WhisperASR",
        ray_actor_options={"num_cpus": s.model_num_cpus, "num_gpus": _model_gpus(settings, gpus_available)},
        max_ongoing_requests=max(4 * s.max_batch_size, 32),
        user_config={"max_batch_size": s.max_batch_size, "batch_wait_s": s.batch_wait_s},
        graceful_shutdown_timeout_s=s.graceful_shutdown_s,
        health_check_period_s=10,
        logging_config=logging_config(s.log_encoding, s.log_level),
        **_replicas(settings),
    )(WhisperASR)
    ingress = serve.deployment(
        name="GradioServer",
        ray_actor_options={"num_cpus": s.ingress_num_cpus},
        max_ongoing_requests=256,
        graceful_shutdown_timeout_s=s.graceful_shutdown_s,
        logging_config=logging_config(s.log_encoding, s.log_level),
    )(GradioServer)
    engine = settings.engine.model_dump(mode="json")
    adapter = str(settings.adapter) if settings.adapter else None
    registry = settings.model_dump(
        mode="json", include={"adapters_dir", "adapters_force", "max_loaded_adapters"}
    )
    bound = model.bind(str(settings.checkpoint), engine, adapter, s.pack_across_callers, registry)
    plain = settings.model_dump(mode="json")
    if not settings.jobs.enabled:
        return ingress.bind(bound, plain)
    runner = serve.deployment(
        name="JobRunner",
        ray_actor_options={"num_cpus": settings.jobs.runner_num_cpus},
        num_replicas=settings.jobs.runners,
        health_check_period_s=2,  # the first check starts the workers
        graceful_shutdown_timeout_s=0,  # no request to finish: a running job's lease lets another resume it
        logging_config=logging_config(s.log_encoding, s.log_level),
    )(JobRunner)
    return ingress.bind(bound, plain, runner.bind(bound, plain))


def app_builder(args: dict[str, Any]) -> Application:
    """For Serve config files: `args` are Settings fields (nested as in the env vars) over the defaults."""
    return build_app(Settings.model_validate(args) if args else Settings())


app = build_app(Settings())
