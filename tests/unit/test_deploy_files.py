"""The deploy files say what a user's first `gcloud builds submit` / `kubectl apply` needs: checked here,
without Docker, gcloud or a cluster."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dockerfile import build_args, expand, instructions
from tuned_whisper.config import PROJECT_ROOT, Settings

HADOLINT = Path(sys.executable).parent / "hadolint"
IMAGE = "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/${_IMAGE}"
BUILT_IN = {"PROJECT_ID", "SHORT_SHA"}


def cloudbuild() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "cloudbuild.yaml").read_text())


def step(step_id: str) -> dict[str, Any]:
    return next(s for s in cloudbuild()["steps"] if s["id"] == step_id)


def deploy_flags() -> dict[str, str]:
    """The deploy step's `--flag=value` arguments with the default substitutions filled in."""
    config = cloudbuild()
    values = {**config["substitutions"], "PROJECT_ID": "my-project", "SHORT_SHA": "abc1234"}
    flags = {}
    for arg in step("deploy")["args"]:
        arg = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], arg)
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            flags[name] = value
    return flags


def rayservice() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "deploy" / "kuberay" / "rayservice.yaml").read_text())


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run([HADOLINT, "Dockerfile"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN cd /app && pip install torch\nCMD python app.py\n")
    result = subprocess.run([HADOLINT, str(careless)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_the_pipeline_builds_tests_pushes_then_deploys_one_image() -> None:
    steps = cloudbuild()["steps"]
    assert [s["id"] for s in steps] == ["build", "test", "push", "deploy"]
    build_tags = [a.split("=", 1)[1] for a in step("build")["args"] if a.startswith("--tag=")]
    assert build_tags == [f"{IMAGE}:${{SHORT_SHA}}", f"{IMAGE}:latest"]
    assert f"{IMAGE}:${{SHORT_SHA}}" in " ".join(step("test")["args"])
    assert step("push")["args"] == ["push", "--all-tags", IMAGE]
    assert f"--image={IMAGE}:${{SHORT_SHA}}" in step("deploy")["args"]


def test_every_substitution_used_has_a_default() -> None:
    text = (PROJECT_ROOT / "cloudbuild.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)\}", text)) | set(re.findall(r"\$(\w+)", text))
    defined = set(cloudbuild()["substitutions"]) | BUILT_IN
    assert used <= defined, used - defined
    assert all(name.startswith("_") for name in cloudbuild()["substitutions"])


def test_cloud_run_gets_an_l4_gpu_with_enough_cpu_and_memory() -> None:
    flags = deploy_flags()
    assert flags["--gpu"] == "1"
    assert flags["--gpu-type"] == "nvidia-l4"
    assert "--no-cpu-throttling" in flags
    assert int(flags["--cpu"]) >= 4
    assert re.fullmatch(r"\d+Gi", flags["--memory"]) and int(flags["--memory"][:-2]) >= 16
    assert flags["--timeout"] == "3600"
    assert int(flags["--concurrency"]) >= 1 and int(flags["--max-instances"]) >= 1
    assert flags["--min-instances"] == "0"
    assert "--no-allow-unauthenticated" in flags and "--allow-unauthenticated" not in flags
    assert {"--gpu-zonal-redundancy", "--no-gpu-zonal-redundancy"} & set(flags)


def test_one_port_everywhere() -> None:
    assert ("EXPOSE", "8080") in instructions()
    env = [pair for kind, arguments in instructions() if kind == "ENV" for pair in shlex.split(arguments)]
    assert "PORT=8080" in env
    assert deploy_flags()["--port"] == "8080"
    assert Settings().serve.port == 8080
    serve_config = yaml.safe_load((PROJECT_ROOT / "deploy" / "serve_config.yaml").read_text())
    assert serve_config["http_options"]["port"] == 8080
    head = rayservice()["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"containerPort": 8080, "name": "serve"} in head["ports"]


def test_cloud_run_only_routes_traffic_once_the_model_is_loaded() -> None:
    flags = deploy_flags()
    probe = dict(pair.split("=") for pair in flags["--startup-probe"].split(","))
    assert probe["httpGet.path"] == "/readyz" and probe["httpGet.port"] == "8080"
    assert int(probe["periodSeconds"]) * int(probe["failureThreshold"]) <= 1800  # Cloud Run's GPU limit
    assert "httpGet.path=/healthz" in flags["--liveness-probe"]


def test_the_image_is_tested_with_the_quick_tier_of_the_suite() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    quick = re.search(r"^test-fast:.*\n\t.*pytest -m (\"[^\"]+\")", makefile, re.M)
    assert quick, "Makefile has a test-fast target"
    assert f"-m {quick.group(1)}" in " ".join(step("test")["args"])


def test_the_rayservice_serves_the_committed_serve_config() -> None:
    spec = rayservice()["spec"]
    committed = yaml.safe_load((PROJECT_ROOT / "deploy" / "serve_config.yaml").read_text())
    assert yaml.safe_load(spec["serveConfigV2"]) == committed
    deployments = {d["name"]: d for d in committed["applications"][0]["deployments"]}
    model = deployments["WhisperASR"]
    assert model["ray_actor_options"]["num_gpus"] == 1
    scaling = model["autoscaling_config"]
    assert scaling["max_replicas"] > scaling["min_replicas"] >= 1


def test_the_rayservice_cluster_autoscales_gpu_workers_running_our_image() -> None:
    import ray

    cluster = rayservice()["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["enableInTreeAutoscaling"] is True
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["maxReplicas"] > workers["minReplicas"] >= 1
    worker = workers["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    substitutions = cloudbuild()["substitutions"]
    image = f"{substitutions['_REGION']}-docker.pkg.dev/PROJECT_ID/{substitutions['_REPOSITORY']}/"
    image += f"{substitutions['_IMAGE']}:latest"
    assert head["image"] == worker["image"] == image


def ignore_patterns(name: str) -> list[str]:
    lines = (PROJECT_ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def copied_sources() -> list[str]:
    sources = []
    for kind, arguments in instructions():
        if kind == "COPY":
            *found, _ = shlex.split(expand(arguments, build_args()))
            sources += [source.rstrip("/") for source in found]
    return sources


def test_the_build_context_keeps_out_tests_outputs_and_venvs_but_not_what_the_image_copies() -> None:
    ignored = ignore_patterns(".dockerignore")
    assert {"tests", "outputs", ".venv", ".git", "adapters"} <= set(ignored)
    for source in copied_sources():
        assert not any(source == p or source.startswith(p + "/") for p in ignored), source


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the build context: it or a folder above it matches a pattern.

    Patterns are anchored at the context root and the last match wins; `*` here also crosses `/`, which
    errs towards "ignored".
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for line in patterns:
        pattern = line.removeprefix("!").strip("/")
        globs = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatch(prefix, glob) for prefix in prefixes for glob in globs):
            ignored = not line.startswith("!")
    return ignored


def test_the_ui_example_clips_are_in_the_build_context_and_copied_into_the_image() -> None:
    ignored = ignore_patterns(".dockerignore")
    assert dockerignored("tests/data/jfk.flac", ignored), "the test copies stay out of the image"
    clips = sorted((PROJECT_ROOT / "tuned_whisper" / "assets" / "examples").glob("*.flac"))
    assert [clip.name for clip in clips] == ["german_tts.flac", "jfk.flac"]
    for clip in clips:
        relative = clip.relative_to(PROJECT_ROOT).as_posix()
        assert not dockerignored(relative, ignored), relative
        assert any(relative.startswith(source + "/") for source in copied_sources()), relative


@pytest.mark.parametrize("kept", ["checkpoint", "tests", "requirements-dev.txt"])
def test_the_cloud_build_upload_keeps_what_the_build_and_its_test_step_need(kept: str) -> None:
    ignored = ignore_patterns(".gcloudignore")
    assert ".venv" in ignored
    assert not any(kept == p or kept.startswith(p + "/") for p in ignored)
