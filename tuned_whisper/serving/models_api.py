"""`POST /v1/models` (an adapter archive in, a servable model out) and `DELETE /v1/models/{id}`, offered
when `TW_API__MODEL_UPLOADS` is on and an API key guards `/v1`."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from tuned_whisper import adapter_archive
from tuned_whisper.adapters import AdapterError, AdapterRegistry
from tuned_whisper.config import ApiSettings
from tuned_whisper.serving.errors import ApiError, bad_request
from tuned_whisper.serving.upload import read_form

MAX_ARCHIVE_BYTES = 1024**3
"""The largest adapter archive accepted (a rank-32 LoRA of large-v3 is about 60 MB)."""

ModelObject = Callable[[str], dict[str, Any]]
"""A model id -> its `/v1/models/{id}` object."""

UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "id"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "id": {"type": "string", "pattern": adapter_archive.NAME.pattern},
                        "force": {"type": "boolean", "default": False},
                    },
                }
            }
        },
    }
}


def add_model_routes(
    router: APIRouter, settings: ApiSettings, registry: AdapterRegistry, model_object: ModelObject
) -> None:
    async def upload_model(request: Request) -> dict[str, Any]:
        """Serve an adapter from an archive (zip or tar of what `finetune/train.py` writes) under `id`; an
        adapter whose recorded dev WER is worse than its base's is refused unless `force` is true."""
        form = await read_form(request, MAX_ARCHIVE_BYTES)
        archive = form.get("file")
        if not isinstance(archive, UploadFile):
            raise bad_request("send the adapter archive in a 'file' form field", param="file")
        name = form.get("id")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("name the model in an 'id' form field", param="id")
        force = str(form.get("force", "false")).strip().lower() in ("1", "true", "yes")
        try:
            await anyio.to_thread.run_sync(_install, registry.root, name.strip(), archive, force)
        except adapter_archive.AdapterExists as exc:
            raise ApiError(409, str(exc), param="id", code="model_exists") from exc
        except adapter_archive.AdapterWorseThanBase as exc:
            raise bad_request(str(exc), param="force", code="adapter_worse_than_base") from exc
        except AdapterError as exc:
            raise bad_request(str(exc), param="file", code="invalid_adapter") from exc
        return model_object(name.strip())

    async def delete_model(model_id: str) -> dict[str, Any]:
        """Stop serving an adapter (OpenAI's `models.delete` shape); the base model cannot be deleted."""
        try:
            removed = await anyio.to_thread.run_sync(adapter_archive.remove, registry.root, model_id)
        except AdapterError:
            removed = False
        if not removed:
            message = f"no uploaded or registered adapter is named {model_id!r}"
            raise ApiError(404, message, param="model", code="model_not_found")
        return {"id": model_id, "object": "model", "deleted": True}

    router.add_api_route("/models", upload_model, methods=["POST"], openapi_extra=UPLOAD_FORM)
    router.add_api_route("/models/{model_id:path}", delete_model, methods=["DELETE"])


def _install(root: Path, name: str, upload: UploadFile, force: bool) -> None:
    """The spooled upload to a temporary file, then into the registry."""
    with tempfile.NamedTemporaryFile(suffix=".archive") as copy:
        upload.file.seek(0)
        while chunk := upload.file.read(1024 * 1024):
            copy.write(chunk)
        copy.flush()
        adapter_archive.install(root, name, Path(copy.name), force=force)
