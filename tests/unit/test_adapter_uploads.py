"""An adapter archive becomes a model of the registry: unpacked safely, gated like the registry, whole."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.test_api_errors import FakeBackend
from tuned_whisper import adapter_archive
from tuned_whisper.adapters import AdapterError, AdapterRegistry
from tuned_whisper.serving import ApiSettings, create_app

CONFIG = json.dumps({"peft_type": "LORA", "r": 8, "target_modules": ["q_proj", "v_proj"]})


def adapter_files(wer_before: float = 0.3, wer_after: float = 0.1) -> dict[str, bytes]:
    summary = {"before": {"wer": wer_before}, "best": {"wer": wer_after}, "data": {"train": 6}}
    return {
        "adapter_config.json": CONFIG.encode(),
        "adapter_model.safetensors": b"\0" * 64,
        "training_summary.json": json.dumps(summary).encode(),
    }


def zipped(files: dict[str, bytes], folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(folder + name, data)
    return buffer.getvalue()


def tarred(files: dict[str, bytes], link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(info)
    return buffer.getvalue()


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    return path


def test_a_zip_or_a_tar_of_one_folder_becomes_a_servable_adapter(tmp_path: Path) -> None:
    root = tmp_path / "adapters"
    registry = AdapterRegistry(root)
    adapter_archive.install(root, "bank-a", write(tmp_path, zipped(adapter_files(), folder="run-7/")))
    adapter_archive.install(root, "bank-b", write(tmp_path, tarred(adapter_files())))
    assert sorted(registry.adapters()) == ["bank-a", "bank-b"]
    assert (root / "bank-a" / "adapter_config.json").read_text() == CONFIG
    assert adapter_archive.remove(root, "bank-a") and sorted(registry.adapters()) == ["bank-b"]
    assert not adapter_archive.remove(root, "bank-a")
    assert [p.name for p in root.iterdir()] == ["bank-b"]  # no staging folder left behind


@pytest.mark.parametrize(
    ("archive", "says"),
    [
        (zipped({"../../evil.json": b"{}", **adapter_files()}), "outside itself"),
        (zipped({"/etc/cron.d/x": b"", **adapter_files()}), "outside itself"),
        (tarred(adapter_files(), link="adapter_model.bin"), "link"),
        (zipped({"adapter_config.json": CONFIG.encode()}), "no adapter weights"),
        (zipped({"adapter_model.safetensors": b"\0"}), "no adapter_config.json"),
        (zipped({**adapter_files(), "adapter_config.json": b'{"peft_type": "IA3"}'}), "LoRA"),
        (zipped({**adapter_files(), "adapter_config.json": b"{nope"}), "not valid JSON"),
        (b"this is no archive", "not a zip or tar"),
    ],
)
def test_a_bad_archive_is_refused_with_its_reason_and_leaves_nothing(
    tmp_path: Path, archive: bytes, says: str
) -> None:
    root = tmp_path / "adapters"
    with pytest.raises(AdapterError, match=says):
        adapter_archive.install(root, "bad", write(tmp_path, archive))
    assert list(root.iterdir()) == [] and not (tmp_path / "evil.json").exists()


def test_names_are_checked_and_never_reach_outside_the_registry(tmp_path: Path) -> None:
    root = tmp_path / "adapters"
    archive = write(tmp_path, zipped(adapter_files()))
    for name in ("../escape", "a/b", ".hidden", "", "x" * 65):
        with pytest.raises(AdapterError, match="not an adapter name"):
            adapter_archive.install(root, name, archive)
    adapter_archive.install(root, "taken", archive)
    with pytest.raises(adapter_archive.AdapterExists):
        adapter_archive.install(root, "taken", archive)


def test_an_adapter_worse_than_its_base_is_refused_unless_forced_and_then_listed(tmp_path: Path) -> None:
    root = tmp_path / "adapters"
    worse = write(tmp_path, zipped(adapter_files(wer_before=0.1, wer_after=0.3)))
    with pytest.raises(adapter_archive.AdapterWorseThanBase, match="force"):
        adapter_archive.install(root, "worse", worse)
    adapter_archive.install(root, "worse", worse, force=True)
    assert list(AdapterRegistry(root).adapters()) == ["worse"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def api(root: Path, **settings: Any) -> httpx.AsyncClient:
    app = create_app(FakeBackend(), ApiSettings(**settings), registry=AdapterRegistry(root))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"Authorization": "Bearer k"}
    )


@pytest.mark.anyio
async def test_uploads_through_the_api_list_the_model_and_delete_it(tmp_path: Path) -> None:
    root = tmp_path / "adapters"
    async with api(root, api_key="k", model_uploads=True) as client:
        files = {"file": ("run.zip", zipped(adapter_files()), "application/zip")}
        made = await client.post("/v1/models", files=files, data={"id": "bank-a"})
        assert made.status_code == 200 and made.json()["id"] == "bank-a"
        assert made.json()["adapter"]["after"] == {"wer": 0.1}
        assert "bank-a" in [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
        again = await client.post("/v1/models", files=files, data={"id": "bank-a"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "model_exists"
        worse = {"file": ("w.zip", zipped(adapter_files(0.1, 0.3)), "application/zip")}
        refused = await client.post("/v1/models", files=worse, data={"id": "worse"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "adapter_worse_than_base"
        broken = await client.post(
            "/v1/models", files={"file": ("x.zip", b"no", "application/zip")}, data={"id": "x"}
        )
        assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_adapter"
        gone = await client.delete("/v1/models/bank-a")
        assert gone.status_code == 200 and gone.json() == {"id": "bank-a", "object": "model", "deleted": True}
        assert (await client.get("/v1/models/bank-a")).status_code == 404
        assert (await client.delete("/v1/models/bank-a")).json()["error"]["code"] == "model_not_found"


@pytest.mark.anyio
async def test_uploads_are_off_unless_enabled_and_guarded_by_a_key(tmp_path: Path) -> None:
    files = {"file": ("run.zip", zipped(adapter_files()), "application/zip")}
    for settings in ({"api_key": "k"}, {"model_uploads": True}):
        async with api(tmp_path / "adapters", **settings) as client:
            assert (await client.post("/v1/models", files=files, data={"id": "a"})).status_code == 405
    async with api(tmp_path / "adapters", api_key="k", model_uploads=True) as client:
        client.headers.pop("Authorization")
        assert (await client.post("/v1/models", files=files, data={"id": "a"})).status_code == 401
