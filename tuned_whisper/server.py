"""Run the Serve app in the foreground: settings from env vars and flags, ready check, clean shutdown."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tuned_whisper.config import Settings
from tuned_whisper.serving.logs import (
    LogForwarder,
    configure_driver,
    logging_config,
    route_driver_serve_logs,
    serve_log_dir,
)

logger = logging.getLogger("tuned_whisper.server")

QUIET_S = 1.0
"""How long the drained ingress must stay idle before Serve is shut down."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="serve_predictor_script.py", description="Start the tuned-whisper service."
    )
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (default $PORT, else 8080)")
    parser.add_argument(
        "--checkpoint", type=Path, help="HF Whisper checkpoint directory (default checkpoint/)"
    )
    parser.add_argument(
        "--adapter", type=Path, help="LoRA adapter from finetune/train.py, on top of the checkpoint"
    )
    parser.add_argument("--replicas", type=int, help="model replicas (default 1)")
    parser.add_argument("--max-replicas", type=int, help="autoscale model replicas up to this many")
    parser.add_argument("--max-batch-size", type=int, help="30 s windows per forward pass (default 8)")
    parser.add_argument("--batch-wait-s", type=float, help="how long to wait to fill a batch (default 0.1)")
    parser.add_argument("--max-upload-mb", type=float, help="largest upload in MB (default 100)")
    parser.add_argument("--api-key", help="require this key on /v1 and the UI (default: $TW_API__API_KEY)")
    parser.add_argument("--no-ui", action="store_true", help="serve the API only")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Flags over `TW_*` env vars over defaults; Cloud Run's `PORT` counts as an env var."""
    settings = Settings()
    serve = {
        "host": args.host,
        "port": args.port or (int(os.environ["PORT"]) if "PORT" in os.environ else None),
        "replicas": args.replicas,
        "max_replicas": args.max_replicas,
        "max_batch_size": args.max_batch_size,
        "batch_wait_s": args.batch_wait_s,
        "ui": False if args.no_ui else None,
    }
    api = {
        "api_key": args.api_key,
        "max_upload_bytes": int(args.max_upload_mb * 1_000_000) if args.max_upload_mb else None,
    }
    update: dict[str, object] = {
        "serve": settings.serve.model_copy(update={k: v for k, v in serve.items() if v is not None}),
        "api": settings.api.model_copy(update={k: v for k, v in api.items() if v is not None}),
    }
    if args.checkpoint:
        update["checkpoint"] = args.checkpoint.resolve()
    if args.adapter:
        update["adapter"] = args.adapter.resolve()
    return Settings.model_validate(settings.model_copy(update=update).model_dump())


def wait_until_ready(url: str, timeout_s: float = 300) -> float:
    """Seconds until `url` answers 200 (the model is loaded and the app routes requests)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} was not ready after {timeout_s} s")


def start(settings: Settings) -> None:
    """Start or join Ray and deploy the app on `settings.serve.host:port` (returns once deployed)."""
    import ray
    from ray import serve

    from tuned_whisper.engine import resolve_backend
    from tuned_whisper.serving.app import APP_NAME, build_app

    if resolve_backend(settings.engine.backend, settings.engine.device) == "ctranslate2":
        from tuned_whisper.engine.ctranslate2_engine import prepare_export

        prepare_export(settings.checkpoint, settings.engine, settings.adapter)
    # Ray starts its control store and raylet in this process's group and blocks only SIGINT in them. A
    # supervisor's SIGTERM to the whole group would kill them under the drain; block SIGTERM in them too,
    # so a group signal reaches this process alone and the shutdown below stops Ray in order.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        ray.init(
            address=os.environ.get("RAY_ADDRESS") or None,
            ignore_reinit_error=True,
            log_to_driver=settings.serve.log_encoding != "JSON",  # JSON lines come whole from the log files
        )
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    serve.start(
        http_options={"host": settings.serve.host, "port": settings.serve.port},
        logging_config=logging_config(settings.serve.log_encoding, settings.serve.log_level),
    )
    gpus = ray.cluster_resources().get("GPU", 0.0)
    serve.run(build_app(settings, gpus_available=gpus), name=APP_NAME, route_prefix="/", blocking=False)
    if settings.serve.log_encoding == "JSON":
        route_driver_serve_logs()


def main(argv: Sequence[str] | None = None) -> int:
    settings = settings_from(parse_args(argv))
    configure_driver(settings.serve.log_encoding, settings.serve.log_level)
    from tuned_whisper.checkpoint import is_checkpoint

    if not is_checkpoint(Path(settings.checkpoint)):
        logger.error("no checkpoint in %s; run `tuned-whisper checkpoint build` first", settings.checkpoint)
        return 1
    started = time.monotonic()
    start(settings)
    forwarder = None
    if settings.serve.log_encoding == "JSON":
        forwarder = LogForwarder(serve_log_dir())
        forwarder.start()
    # After ray.init, which installs its own fatal-signal handlers: SIGTERM here means drain and stop.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    url = f"http://127.0.0.1:{settings.serve.port}/readyz"
    wait_until_ready(url)
    logger.info(
        "ready in %.1f s on http://%s:%d",
        time.monotonic() - started,
        settings.serve.host,
        settings.serve.port,
    )
    stop.wait()
    code = shutdown(settings.serve.graceful_shutdown_s)
    if forwarder is not None:
        forwarder.stop()
    return code


def drain(timeout_s: float) -> int:
    """Ask the ingress to refuse new work and wait until its requests in flight finish; returns those left."""
    from ray import serve

    from tuned_whisper.serving.app import APP_NAME

    ingress = serve.get_deployment_handle("GradioServer", app_name=APP_NAME)
    left = ingress.drain.remote().result()
    deadline = time.monotonic() + timeout_s
    idle_since = time.monotonic() if not left else None
    # Done once nothing has been in flight for a moment: a request the proxy accepted just before the
    # drain reaches the ingress within it and is answered (served, or refused with a 503), not dropped.
    while time.monotonic() < deadline:
        if idle_since is not None and time.monotonic() - idle_since >= QUIET_S:
            break
        time.sleep(0.2)
        left = ingress.requests_in_flight.remote().result()
        if left:
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
    return left


def shutdown(timeout_s: float) -> int:
    from ray import serve

    logger.info("shutting down: finishing in-flight requests (up to %.0f s)", timeout_s)
    try:
        left = drain(timeout_s)
    except Exception:  # the app may already be gone; shut down all the same
        logger.exception("could not drain the ingress")
        left = -1
    if left:
        logger.warning("%d requests were still in flight", left)
    serve.shutdown()
    logger.info("stopped")
    return 0
