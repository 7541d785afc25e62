"""Shared fixtures: the real default checkpoint (built from the packaged weights when missing) and engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuned_whisper.config import PROJECT_ROOT, EngineSettings, Settings

IVR_EN = PROJECT_ROOT / "data" / "ivr-en"  # shipped with the repository (CC-BY-SA-3.0, see its COPYRIGHT)
IVR_DEV = IVR_EN / "dev"

TRAIN = IVR_EN / "train"
# Prompts in the domain's house style ("*", "#", numerals, "3D") that the base model writes differently.
HOUSE_STYLE = [
    "both_help.flac",
    "vm-Cust1.flac",
    "vm-Cust2.flac",
    "confbridge-binaural-on.flac",
    "vm-next.flac",
    "dir-multi9.flac",
]


def subset(root: Path, names: list[str]) -> Path:
    """An audiofolder with only these clips of ivr-en train (linked, not copied)."""
    lines = (TRAIN / "metadata.csv").read_text().splitlines()
    root.mkdir()
    keep = [lines[0]] + [line for line in lines[1:] if line.split(",", 1)[0] in names]
    (root / "metadata.csv").write_text("\n".join(keep) + "\n")
    for name in names:
        (root / name).symlink_to(TRAIN / name)
    return root


def train_references() -> dict[str, str]:
    """Each ivr-en train clip's transcript, by file name."""
    return {
        line.split(",", 1)[0]: line.split(",", 1)[1].rsplit(",en,", 1)[0].strip('"')
        for line in (TRAIN / "metadata.csv").read_text().splitlines()[1:]
    }


@pytest.fixture(scope="session")
def overfit_run(tmp_path_factory: pytest.TempPathFactory, checkpoint_dir: Path) -> dict:
    """A LoRA adapter overfit on six house-style clips: it writes "*", "#" and numerals as the domain does."""
    from finetune.train import main

    data = subset(tmp_path_factory.mktemp("data") / "train", HOUSE_STYLE)
    output = tmp_path_factory.mktemp("adapter")
    args = [
        "--checkpoint",
        str(checkpoint_dir),
        "--train",
        str(data),
        "--dev",
        str(data),
        "--output_dir",
        str(output),
        "--num_epochs",
        "36",
        "--eval_every_epochs",
        "12",
        "--batch_size",
        "6",
        "--learning_rate",
        "0.003",
        "--warmup_ratio",
        "0.0",
    ]
    assert main(args) == 0
    return json.loads((output / "training_summary.json").read_text())


@pytest.fixture(scope="session")
def checkpoint_dir() -> Path:
    """The embedded default checkpoint; built once from the packaged weights if the set-up has not."""
    from tuned_whisper.checkpoint import DEFAULT_SOURCE, build_checkpoint, is_checkpoint, is_current

    path = PROJECT_ROOT / "checkpoint"
    if not is_current(path):
        build_checkpoint(DEFAULT_SOURCE, path, force=is_checkpoint(path))
    return path


@pytest.fixture(scope="session")
def settings(checkpoint_dir: Path) -> Settings:
    return Settings(checkpoint=checkpoint_dir, engine=EngineSettings(device="cpu", batch_size=4))


@pytest.fixture(scope="session")
def transcriber(settings: Settings) -> Iterator[object]:
    from tuned_whisper.engine import load_transcriber

    yield load_transcriber(settings)


API_KEY = "sk-local-test"
SECOND_KEY = "sk-local-second-caller"
UPLOAD_LIMIT = 4 * 1024 * 1024  # every committed clip is under it
MAX_AUDIO_S = 150.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the served app keeps its job store, uploads and results."""
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="session")
def adapters_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served app's adapter registry (empty at the start)."""
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="session")
def served_settings(checkpoint_dir: Path, jobs_dir: Path, adapters_dir: Path) -> Settings:
    """The served app's settings. Small limits so that tests can reach them: a 4 MiB upload limit, 150 s
    of audio at most, an API key on /v1."""
    from tuned_whisper.config import ApiSettings, JobsSettings, ServeSettings

    return Settings(
        checkpoint=checkpoint_dir,
        max_audio_s=MAX_AUDIO_S,
        adapters_dir=adapters_dir,
        engine=EngineSettings(device="cpu"),
        api=ApiSettings(
            api_key=API_KEY,
            extra_api_keys=(SECOND_KEY,),
            max_upload_bytes=UPLOAD_LIMIT,
            max_audio_s=MAX_AUDIO_S,
            model_uploads=True,
        ),
        serve=ServeSettings(host="127.0.0.1", port=free_port(), model_num_cpus=0.5, ingress_num_cpus=0.25),
        jobs=JobsSettings(data_dir=jobs_dir, poll_s=0.2, lease_s=6),
    )


@pytest.fixture(scope="session")
def served_app(served_settings: Settings) -> Iterator[str]:
    """The real product: Ray Serve (local) running the ingress with UI and API and a model replica.
    Yields the base URL."""
    import ray
    from ray import serve

    from tuned_whisper.server import start, wait_until_ready

    settings = served_settings
    port = settings.serve.port
    start(settings)
    wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=180)
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()
