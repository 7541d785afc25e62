"""The log forwarder: Serve's per-process log files to stdout as JSON lines, whole lines only."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

from tuned_whisper.serving.logs import JsonFormatter, LogForwarder, as_json_line


def test_every_line_the_files_gain_reaches_the_output_once_and_as_json(tmp_path: Path) -> None:
    replica = tmp_path / "replica_tuned-whisper_WhisperASR_abc.log"
    proxy = tmp_path / "proxy_127.0.0.1.log"
    replica.write_text(json.dumps({"message": "CALL decode OK", "request_id": "r1"}) + "\n")
    proxy.write_text("INFO 2026-12-04 proxy 127.0.0.1 r1 -- POST /v1/audio/transcriptions 200\n")
    out = io.StringIO()
    forwarder = LogForwarder(tmp_path, out)
    forwarder.forward()
    with replica.open("a") as handle:  # a line being written: held back until it ends
        handle.write('{"message": "CALL decode OK", "request_id": "r2"')
    forwarder.forward()
    with replica.open("a") as handle:
        handle.write("}\n")
    forwarder.forward()
    forwarder.forward()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r.get("request_id") for r in records if "CALL" in r["message"]] == ["r1", "r2"]
    wrapped = [r for r in records if r.get("component_name") == "proxy"]
    assert len(wrapped) == 1 and wrapped[0]["message"].endswith("200")


def test_text_and_json_lines_both_come_out_as_one_object() -> None:
    assert json.loads(as_json_line('{"a": 1}\n', "replica")) == {"a": 1}
    assert json.loads(as_json_line("[1, 2]", "controller")) == {
        "message": "[1, 2]",
        "component_name": "controller",
    }


def test_the_drivers_own_lines_are_json_with_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failure = sys.exc_info()
    record = logging.LogRecord(
        "tuned_whisper.server", logging.ERROR, __file__, 1, "could not %s", ("drain",), failure
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "could not drain" and line["levelname"] == "ERROR"
    assert "ValueError: boom" in line["exc_text"] and line["component_name"] == "driver"
