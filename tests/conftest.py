"""Shared fixtures: the real default checkpoint (built from the packaged weights when missing) and engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tuned_whisper.config import PROJECT_ROOT, EngineSettings, Settings

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
IVR_DEV = SHARED_DATA / "ivr-en" / "dev"


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
