"""Scale-out: the same fine-tuning loop on N Ray Train workers (`TorchTrainer`), data-parallel.

    python finetune/train.py finetune/configs/ivr-en.json      # with "ray_workers": 4 in the JSON, or
    python finetune/train.py --train ... --dev ... --ray_workers 4 --ray_use_gpu

Each worker loads the base checkpoint, prepares its shard of the train split and trains the LoRA weights
under DistributedDataParallel (NCCL on GPUs, Gloo on CPUs); gradients are averaged, so the effective batch
is `batch_size` × workers. Rank 0 scores dev, keeps the best adapter and hands it back to the driver
as a Ray Train checkpoint, which lands in `output_dir` as a run in one process would write it.

On a multi-node cluster, every node must see the checkpoint and the data at the same paths (the image has
the checkpoint; put the data on shared storage), and `ray_storage` must be shared storage too (`gs://...`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.data import DataArguments
from finetune.loop import SUMMARY_FILE, LoraArguments, ModelArguments, TrainArguments, Workers, run


@dataclass
class ScaleArguments:
    ray_workers: int = field(
        default=0, metadata={"help": "train on N Ray Train workers (0: in this process)"}
    )
    ray_use_gpu: bool = field(default=False, metadata={"help": "one GPU per Ray Train worker"})
    ray_cpus_per_worker: float = field(default=1.0, metadata={"help": "CPUs reserved per worker"})
    ray_address: str | None = field(default=None, metadata={"help": "Ray cluster to join (default: local)"})
    ray_storage: str | None = field(
        default=None, metadata={"help": "Ray Train storage (default: a temp dir)"}
    )


def _worker_loop(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: the loop on its shard; rank 0 reports the adapter at the end."""
    import ray.train
    import torch
    from ray.train.torch import prepare_model

    context = ray.train.get_context()
    torch.set_num_threads(max(1, int(config["threads"])))
    workers = Workers(
        rank=context.get_world_rank(), world_size=context.get_world_size(), prepare_model=prepare_model
    )
    with tempfile.TemporaryDirectory() as local:
        model_args = ModelArguments(**{**config["model"], "output_dir": str(Path(local) / "adapter")})
        summary = run(
            model_args,
            DataArguments(**config["data"]),
            LoraArguments(**config["lora"]),
            TrainArguments(**config["train"]),
            workers,
        )
        checkpoint = None
        if workers.rank == 0:
            checkpoint = ray.train.Checkpoint.from_directory(model_args.output_dir)
        # Every rank reports (a barrier in Ray Train); only rank 0 carries the adapter.
        ray.train.report({"best_wer": summary.get("best", {}).get("wer", -1.0)}, checkpoint=checkpoint)


def run_on_ray(
    model_args: ModelArguments,
    data: DataArguments,
    lora_args: LoraArguments,
    args: TrainArguments,
    scale: ScaleArguments,
) -> dict[str, Any]:
    """Train on `scale.ray_workers` workers; the best adapter and its summary end up in `output_dir`."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if scale.ray_workers < 1:
        raise ValueError("ray_workers must be at least 1")
    ray.init(address=scale.ray_address, ignore_reinit_error=True, log_to_driver=True)
    data = DataArguments(**{**asdict(data), **_absolute(data)})
    model_args = ModelArguments(
        checkpoint=_absolute_path(model_args.checkpoint), output_dir=model_args.output_dir
    )
    storage = scale.ray_storage or tempfile.mkdtemp(prefix="tuned-whisper-ray-train-")
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "model": asdict(model_args),
            "data": asdict(data),
            "lora": asdict(lora_args),
            "train": asdict(args),
            "threads": scale.ray_cpus_per_worker,
        },
        scaling_config=ScalingConfig(
            num_workers=scale.ray_workers,
            use_gpu=scale.ray_use_gpu,
            resources_per_worker={"CPU": scale.ray_cpus_per_worker},
        ),
        run_config=RunConfig(name="tuned-whisper-lora", storage_path=storage),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"the Ray Train run reported no adapter: {result.error}")
    output = Path(model_args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    with result.checkpoint.as_directory() as adapter:
        shutil.copytree(adapter, output, dirs_exist_ok=True)
    summary = json.loads((output / SUMMARY_FILE).read_text(encoding="utf-8"))
    summary["adapter"] = str(output)
    (output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if scale.ray_storage is None:
        shutil.rmtree(storage, ignore_errors=True)
    return summary


def _absolute_path(path: str) -> str:
    """Workers run in other directories: local paths become absolute, hub ids stay as they are."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def _absolute(data: DataArguments) -> dict[str, Any]:
    return {name: _absolute_path(getattr(data, name)) for name in ("train", "dev") if getattr(data, name)}
