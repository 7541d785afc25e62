"""Many fine-tunes on one service, without a model: the registry of named adapters, how a request's
`model` picks one (or gets a 404), and how a replica keeps a bounded number of them loaded."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.unit.test_api_errors import WAV, FakeBackend, anyio_backend, transcribe
from tests.unit.test_longform import FakeDecoder
from tuned_whisper.adapters import AdapterRegistry
from tuned_whisper.config import ApiSettings
from tuned_whisper.engine.batching import WindowJob, decode_jobs
from tuned_whisper.engine.multi import MultiDecoder, UnknownAdapter
from tuned_whisper.engine.quality import DecodingRules
from tuned_whisper.engine.windows import Decoded
from tuned_whisper.serving.api import create_app
from tuned_whisper.types import TranscribeOptions

__all__ = ["anyio_backend"]  # the fixture the async tests run on


def place(root: Path, name: str, *, before: float = 0.3, after: float = 0.2, weights: bool = True) -> Path:
    """An adapter directory as `finetune/train.py` leaves it (config, weights, training summary)."""
    path = root / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    if weights:
        (path / "adapter_model.safetensors").write_bytes(b"\0")
    summary = {"data": {"train": "calls"}, "before": {"wer": before}, "best": {"epoch": 3, "wer": after}}
    (path / "training_summary.json").write_text(json.dumps(summary))
    return path


def test_the_registry_offers_adapters_placed_in_it_and_forgets_removed_ones(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path)
    assert registry.adapters() == {}
    place(tmp_path, "bank")
    place(tmp_path, "half-copied", weights=False)
    assert list(registry.adapters()) == ["bank"]
    time.sleep(0.01)  # a new directory changes the root's listing
    place(tmp_path, "media")
    assert sorted(registry.adapters()) == ["bank", "media"]
    for file in (tmp_path / "bank").iterdir():
        file.unlink()
    (tmp_path / "bank").rmdir()
    assert list(registry.adapters()) == ["media"]


def test_an_adapter_worse_than_its_base_is_not_offered_unless_forced(tmp_path: Path) -> None:
    place(tmp_path, "overfit", before=0.2, after=0.35)
    place(tmp_path, "good", before=0.3, after=0.2)
    assert list(AdapterRegistry(tmp_path).adapters()) == ["good"]
    assert sorted(AdapterRegistry(tmp_path, force=["overfit"]).adapters()) == ["good", "overfit"]


def client(backend: FakeBackend, registry: AdapterRegistry) -> httpx.AsyncClient:
    app = create_app(backend, ApiSettings(), registry=registry)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.mark.anyio
async def test_models_lists_the_base_and_every_adapter_with_its_metrics(tmp_path: Path) -> None:
    place(tmp_path, "bank", before=0.3, after=0.2)
    async with client(FakeBackend(), AdapterRegistry(tmp_path)) as api:
        listed = (await api.get("/v1/models")).json()["data"]
        assert [m["id"] for m in listed] == ["whisper-base", "bank"]
        assert listed[1]["parent"] == "whisper-base"
        assert listed[1]["adapter"]["before"] == {"wer": 0.3} and listed[1]["adapter"]["after"]["wer"] == 0.2
        assert (await api.get("/v1/models/bank")).json()["id"] == "bank"
        missing = await api.get("/v1/models/insurance")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
        assert "'bank'" in missing.json()["error"]["message"]


@pytest.mark.anyio
async def test_a_request_picks_its_adapter_by_model_and_an_unknown_model_is_a_404(tmp_path: Path) -> None:
    place(tmp_path, "bank")
    backend = FakeBackend()
    async with client(backend, AdapterRegistry(tmp_path)) as api:
        for model in ("bank", "whisper-1", "whisper-base"):
            assert (await transcribe(api, {"model": model}, audio=WAV)).status_code == 200
        unknown = await transcribe(api, {"model": "insurance"}, audio=WAV)
        assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    assert [c.adapter for c in backend.calls] == ["bank", None, None]


class Tagged(FakeDecoder):
    """A fake model whose every decode says which model it is (its first token)."""

    def __init__(self, tag: int) -> None:
        super().__init__()
        self.tag = tag

    def decode(
        self,
        windows: Sequence[np.ndarray],
        languages: Sequence[str | None],
        options: TranscribeOptions,
        temperature: float,
    ) -> list[Decoded]:
        self.calls.append((len(windows), temperature))
        return [Decoded(np.asarray([self.tag]), -0.1, 0.0, temperature, "en") for _ in windows]


def test_a_replica_decodes_each_adapters_windows_with_it_and_keeps_the_recent_ones(tmp_path: Path) -> None:
    loaded: list[str] = []

    def load(path: Path) -> Tagged:
        loaded.append(path.name)
        return Tagged(int(path.name[-1]))

    known = {f"a{i}": tmp_path / f"a{i}" for i in (1, 2, 3)}
    models = MultiDecoder(Tagged(0), known.get, load, capacity=2)
    audio = np.ones(16000, dtype=np.float32)
    jobs = [
        WindowJob(audio, TranscribeOptions(language="en", adapter=name), "en", caller="one", packable=True)
        for name in (None, "a1", "a2", "a1", None)
    ]
    out = decode_jobs(models, jobs, DecodingRules(), None)
    assert [int(d.tokens[0]) for d in out] == [0, 1, 2, 1, 0]  # every window by its own model
    assert models.base.calls == [(2, 0.0)] and loaded == ["a1", "a2"]
    models.decoder("a3")  # a third one: the least recently used (a1) goes
    assert list(models.loaded) == ["a2", "a3"]
    models.decoder("a1")
    assert loaded == ["a1", "a2", "a3", "a1"]
    with pytest.raises(UnknownAdapter):
        models.decoder("a9")
