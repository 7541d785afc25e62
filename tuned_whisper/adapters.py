"""LoRA adapters from `finetune/`: load one onto its base checkpoint; read its training summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUMMARY_FILE = "training_summary.json"


class AdapterError(ValueError):
    """The adapter directory cannot be used; the message says what to fix."""


def read_summary(adapter: Path) -> dict[str, Any] | None:
    """The training summary the fine-tuning run wrote next to the adapter (data, settings, metrics)."""
    file = adapter / SUMMARY_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


def load_merged(checkpoint: str | Path, adapter: Path, dtype: Any, device: str) -> Any:
    """The base Whisper model with the adapter merged into its weights (no LoRA overhead at inference)."""
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    if not (adapter / "adapter_config.json").is_file():
        raise AdapterError(f"no LoRA adapter in '{adapter}' (adapter_config.json is missing)")
    base = WhisperForConditionalGeneration.from_pretrained(str(checkpoint), dtype=dtype)
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().to(device).eval()


def adapter_card(adapter: Path) -> dict[str, Any]:
    """What `/v1/models` reports about a served adapter."""
    summary = read_summary(adapter) or {}
    return {
        "path": str(adapter),
        "data": summary.get("data"),
        "before": summary.get("before"),
        "after": summary.get("best"),
    }
