"""Schemathesis fuzzes `/v1` from the service's own OpenAPI schema, against the real engine and ffmpeg:
whatever it sends, within the schema or just outside it, is never answered with a 5xx, and every answer
is one the schema documents, in its documented shape."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.servers import serve_asgi
from tuned_whisper.config import JobsSettings
from tuned_whisper.jobs import open_store
from tuned_whisper.serving import ApiSettings, EngineBackend, create_app
from tuned_whisper.serving.jobs_api import JobsApi

pytestmark = pytest.mark.faults

KEY = "sk-schema-fuzz"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_url(transcriber: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz-jobs")
    api = ApiSettings(api_key=KEY, max_audio_s=120)
    jobs = JobsSettings(data_dir=data_dir)
    store = open_store(data_dir / "jobs.sqlite3")
    app = create_app(EngineBackend(transcriber), api, JobsApi(store, jobs, api))  # type: ignore[arg-type]
    with serve_asgi(app) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(fuzzed_url: str) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{fuzzed_url}/openapi.json", headers=AUTH)
    schema.config.update(base_url=fuzzed_url)
    return schema.include(path_regex="^/v1/")


def test_no_request_to_v1_gets_a_server_error_or_an_undocumented_answer(
    api_schema: schemathesis.BaseSchema,
) -> None:
    # Hypothesis drives each operation's strategy here rather than through schemathesis' pytest plugin,
    # which does not run under pytest 9.
    tried = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation, mode in itertools.product(operations, GenerationMode):  # valid, and just invalid
        tried.append(operation.label)

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=120)

        call()
    assert len(set(tried)) >= 10, tried


def test_the_schema_documents_the_error_shape_for_every_v1_operation(fuzzed_url: str) -> None:
    document = requests.get(f"{fuzzed_url}/openapi.json", headers=AUTH, timeout=10).json()
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in methods.items()
    ]
    assert len(operations) >= 10
    for path, method, operation in operations:
        documented = operation["responses"]
        assert {"400", "401", "429"} <= set(documented), (method, path, sorted(documented))
        body = documented["400"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)
