"""LoRA adapters from `finetune/`: load one onto its base checkpoint, read its training summary, and the
registry of named adapters a server offers as models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUMMARY_FILE = "training_summary.json"
FORCED_MARKER = ".forced"
"""In an adapter's directory: serve it although it reads worse than its base (set by a forced upload)."""


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


BASE_ALIASES = ("whisper-1",)
"""Model ids that always mean the base checkpoint (OpenAI's SDKs send `whisper-1`)."""


@dataclass(frozen=True)
class Adapter:
    """A servable adapter of the registry: its name (the model id), directory and recorded metrics."""

    name: str
    path: Path
    summary: dict[str, Any] | None

    @property
    def worse_than_base(self) -> bool:
        """The fine-tune's recorded dev WER is above its base's (the `eval --max-wer` gate, refused)."""
        before = ((self.summary or {}).get("before") or {}).get("wer")
        after = ((self.summary or {}).get("best") or {}).get("wer")
        return before is not None and after is not None and after > before


class AdapterRegistry:
    """A directory of named adapters (`<root>/<name>/adapter_config.json` as `finetune/train.py` writes).

    Read again whenever the directory changes, so that an adapter placed there (or removed) is served (or
    no longer) without a restart. An adapter whose dev WER is worse than its base is not offered unless
    its name is in `force` or it holds a `FORCED_MARKER`.
    """

    def __init__(self, root: Path, force: Sequence[str] = ()) -> None:
        self.root = root
        self.force = frozenset(force)
        self._stamp: tuple[tuple[str, float], ...] | None = None
        self._adapters: dict[str, Adapter] = {}

    def adapters(self) -> dict[str, Adapter]:
        """The servable adapters by name, as the directory holds them now."""
        stamp = self._stamp_now()
        if stamp != self._stamp:
            self._adapters = self._scan(stamp)
            self._stamp = stamp
        return dict(self._adapters)

    def get(self, name: str) -> Adapter | None:
        return self.adapters().get(name)

    def _stamp_now(self) -> tuple[tuple[str, float], ...]:
        if not self.root.is_dir():
            return ()
        # hidden entries are uploads still being unpacked
        entries = [
            (p.name, p.stat().st_mtime) for p in self.root.iterdir() if p.is_dir() and p.name[0] != "."
        ]
        return tuple(sorted(entries))

    def _scan(self, stamp: tuple[tuple[str, float], ...]) -> dict[str, Adapter]:
        found: dict[str, Adapter] = {}
        for name, _ in stamp:
            path = self.root / name
            weights = any((path / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin"))
            if not (path / "adapter_config.json").is_file() or not weights:  # absent, or still being copied
                continue
            try:
                adapter = Adapter(name, path, read_summary(path))
            except (OSError, ValueError):  # a summary half-written or broken: not servable yet
                continue
            if adapter.worse_than_base and name not in self.force and not (path / FORCED_MARKER).exists():
                continue
            found[name] = adapter
        return found
