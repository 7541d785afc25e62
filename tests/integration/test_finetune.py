"""A user's fine-tuning story on real telephone speech, on the CPU: train, see the gain, merge, serve it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import HOUSE_STYLE, TRAIN, subset, train_references
from tuned_whisper.evaluation import score

pytestmark = pytest.mark.slow


def test_training_lowers_the_loss_and_learns_the_house_style(overfit_run: dict) -> None:
    losses = overfit_run["mean_loss_per_epoch"]
    assert losses[-1] < losses[0] / 2
    before, after = overfit_run["before"], overfit_run["best"]
    assert before["wer"] > 0.2  # the base model does not write "*", "#", "3D" or numerals this way
    assert after["wer"] < before["wer"] / 2
    examples = overfit_run["dev_examples"]
    exact_before = sum(e["before"] == e["reference"] for e in examples)
    exact_after = sum(e["after"] == e["reference"] for e in examples)
    assert exact_after >= len(examples) // 2 and exact_after > exact_before, examples


def test_the_adapter_merges_into_a_checkpoint_that_transcribes_in_house_style(
    overfit_run: dict, tmp_path: Path
) -> None:
    from finetune.merge import main as merge
    from tuned_whisper.audio import decode_audio
    from tuned_whisper.config import EngineSettings, Settings
    from tuned_whisper.engine import load_transcriber
    from tuned_whisper.types import TranscribeOptions

    def engine_for(checkpoint: Path, backend: str, adapter: Path | None = None) -> object:
        engine = EngineSettings(device="cpu", backend=backend, ct2_cache_dir=tmp_path / "ct2")
        return load_transcriber(Settings(checkpoint=checkpoint, adapter=adapter, engine=engine))

    merged = tmp_path / "checkpoint-ivr"
    assert merge(["--adapter", overfit_run["adapter"], "--output", str(merged)]) == 0
    provenance = json.loads((merged / "provenance.json").read_text())
    assert provenance["kind"] == "merged"
    assert provenance["extra"]["metrics"]["wer"] == overfit_run["best"]["wer"]
    assert "| before |" in (merged / "README.md").read_text()

    engine = engine_for(merged, "transformers")
    references = train_references()
    options = TranscribeOptions(language="en")
    merged_texts = {name: engine.transcribe(decode_audio(TRAIN / name), options).text for name in HOUSE_STYLE}
    rates = score([references[n] for n in HOUSE_STYLE], [merged_texts[n] for n in HOUSE_STYLE])
    assert rates.wer < overfit_run["before"]["wer"] / 2

    # The adapter served on top of its base checkpoint is the same model as the merged checkpoint.
    adapted = engine_for(Path(overfit_run["base_checkpoint"]), "transformers", Path(overfit_run["adapter"]))
    assert adapted.info.adapter == overfit_run["adapter"]
    clip = HOUSE_STYLE[0]
    assert adapted.transcribe(decode_audio(TRAIN / clip), options).text == merged_texts[clip]

    # The fast backend exports the fine-tune (merged, or base + adapter merged on the fly): same style.
    for fast in (
        engine_for(merged, "ctranslate2"),
        engine_for(Path(overfit_run["base_checkpoint"]), "ctranslate2", Path(overfit_run["adapter"])),
    ):
        assert fast.info.backend == "ctranslate2"
        texts = [fast.transcribe(decode_audio(TRAIN / name), options).text for name in HOUSE_STYLE]
        assert score([references[n] for n in HOUSE_STYLE], texts).wer < overfit_run["before"]["wer"] / 2


def test_the_same_run_scales_out_on_ray_train_workers(tmp_path: Path, checkpoint_dir: Path) -> None:
    """`--ray_workers 2`: two Ray Train workers (Gloo on the CPU) share the clips and average gradients;
    the best adapter comes back to `output_dir` like a one-process run's."""
    import os
    import subprocess
    import sys

    from tuned_whisper.adapters import read_summary
    from tuned_whisper.config import PROJECT_ROOT

    data = subset(tmp_path / "train", HOUSE_STYLE)
    output = tmp_path / "adapter"
    args = [
        *("--checkpoint", str(checkpoint_dir), "--train", str(data), "--dev", str(data)),
        *("--output_dir", str(output), "--num_epochs", "12", "--eval_every_epochs", "12"),
        *("--batch_size", "3", "--learning_rate", "0.003", "--warmup_ratio", "0.0"),
        *("--ray_workers", "2", "--ray_cpus_per_worker", "0.5"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "finetune/train.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["training"]["workers"] == 2
    assert summary["data"]["train_clips"] == len(HOUSE_STYLE)
    losses = summary["mean_loss_per_epoch"]
    assert losses[-1] < losses[0] / 2
    assert summary["best"]["wer"] < summary["before"]["wer"]
    assert (output / "adapter_model.safetensors").is_file()
    assert read_summary(output) is not None  # what the server shows in /v1/models


def test_the_adapter_placed_in_the_registry_is_served_by_name_beside_the_base(
    overfit_run: dict, tmp_path: Path
) -> None:
    """One engine, the base and the fine-tune by name: requests for both decoded in the same batches."""
    from tuned_whisper.audio import decode_audio
    from tuned_whisper.config import EngineSettings, Settings
    from tuned_whisper.engine import load_transcriber
    from tuned_whisper.types import TranscribeOptions

    registry = tmp_path / "adapters"
    registry.mkdir()
    (registry / "ivr-house-style").symlink_to(overfit_run["adapter"], target_is_directory=True)
    engine = EngineSettings(device="cpu", backend="ctranslate2", ct2_cache_dir=tmp_path / "ct2")
    served = load_transcriber(
        Settings(checkpoint=Path(overfit_run["base_checkpoint"]), adapters_dir=registry, engine=engine)
    )
    references = [train_references()[name] for name in HOUSE_STYLE]
    clips = [decode_audio(TRAIN / name) for name in HOUSE_STYLE]
    styled = TranscribeOptions(language="en", adapter="ivr-house-style")
    plain = TranscribeOptions(language="en")
    texts = [t.text for t in served.transcribe_many([(c, o) for c in clips for o in (styled, plain)])]
    fine, base = texts[0::2], texts[1::2]
    assert score(references, fine).wer < overfit_run["before"]["wer"] / 2
    assert score(references, base).wer > score(references, fine).wer
    assert served.decoder.loads == 1  # loaded once, on first use
