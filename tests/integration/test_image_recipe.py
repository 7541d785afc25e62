"""The container image's recipe, replayed here without Docker: the Dockerfile's COPY steps from a clean
checkout, its RUN steps (deploy/image/install.sh, CPU variant) into a fresh virtualenv, its runtime ENV and
CMD; the service that comes up must answer /readyz and transcribe."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.clips import JFK
from tests.conftest import free_port
from tests.dockerfile import build_args, expand, instructions
from tuned_whisper.config import PROJECT_ROOT
from tuned_whisper.server import wait_until_ready

pytestmark = pytest.mark.slow


def tracked_files(source: str) -> list[str]:
    """What a clean clone holds under `source` (the build context Cloud Build gets from a trigger)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", source], cwd=PROJECT_ROOT, capture_output=True, check=True
    )
    return [name for name in listed.stdout.decode().split("\0") if name]


def copy_step(arguments: str, variables: dict[str, str], workdir: Path) -> None:
    """COPY as Docker does it: a directory's contents into the destination, a file into it or onto it."""
    *sources, destination = shlex.split(expand(arguments, variables))
    target = workdir / destination
    for source in (s.rstrip("/") for s in sources):
        is_dir = (PROJECT_ROOT / source).is_dir()
        for name in tracked_files(source):
            if is_dir:
                into = target / Path(name).relative_to(source)
            elif destination.endswith("/"):
                into = target / Path(name).name
            else:
                into = target
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, into)


def test_the_dockerfile_installs_through_the_shared_recipe() -> None:
    runs = [arguments for kind, arguments in instructions() if kind == "RUN"]
    assert [r for r in runs if "install.sh" in r] == [
        "deploy/image/install.sh deps",
        "deploy/image/install.sh app",
    ]
    assert all("pip" not in r for r in runs), "pip belongs in install.sh, where CI replays it"
    kinds = [kind for kind, _ in instructions()]
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN"), "the app runs as non-root"


def test_the_image_recipe_builds_a_service_that_answers(tmp_path: Path) -> None:
    image = tmp_path / "image"
    app_dir, venv = image / "app", image / "venv"
    variables = {**build_args(), "VARIANT": "cpu"}
    # On this machine pip's own configuration holds the pinned CPU torch; no PyTorch index is reachable.
    env = {
        **os.environ,
        **variables,
        "TORCH_INDEX_URL": "",
        "VENV": str(venv),
        "PYTHON": getattr(sys, "_base_executable", sys.executable),
    }
    env.pop("VIRTUAL_ENV", None)
    env.pop("RAY_ADDRESS", None)
    workdir = image
    for kind, arguments in instructions():
        if kind == "WORKDIR":
            workdir = image / arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif kind == "COPY":
            copy_step(arguments, variables, workdir)
        elif kind == "RUN" and "install.sh" in arguments:
            subprocess.run(["bash", *shlex.split(arguments)], cwd=workdir, env=env, check=True, timeout=900)
        elif kind == "ENV":
            for name, value in (pair.split("=", 1) for pair in shlex.split(arguments)):
                value = value.replace("/opt/venv", str(venv))
                value = str(app_dir) + value[len("/app") :] if value.startswith("/app") else value
                env[name] = expand(value, env)
    assert workdir == app_dir
    assert (app_dir / "checkpoint" / "model.safetensors").is_file(), "the checkpoint is baked in"
    assert not (app_dir / "tests").exists()

    port = free_port()
    env.update(PORT=str(port), TW_SERVE__MODEL_NUM_CPUS="0.5", TW_SERVE__UI="false")
    command = json.loads(next(arguments for kind, arguments in instructions() if kind == "CMD"))
    command = [str(venv / "bin" / "python") if part == "python" else part for part in command]
    server = subprocess.Popen(command, cwd=app_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=240)
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/audio/transcriptions",
            files={"file": ("jfk.wav", JFK.path.read_bytes())},
            data={"model": "whisper-1"},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        assert "ask not what your country can do for you" in response.json()["text"].lower()
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()
        assert models["data"][0]["provenance"]["source"] == "base"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            server.kill()
