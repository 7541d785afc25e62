"""`/metrics` sums every replica's series from Ray's exporters (text as Ray 2.60 writes it)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tuned_whisper.serving.cluster_metrics import merge, scrape

WORKER = (
    'Component="core_worker",NodeAddress="10.0.0.{node}",SessionName="s",Version="2.60.0",WorkerId="{worker}"'
)


def exporter(node: int, replicas: dict[str, float], batches: dict[str, int]) -> str:
    """One node's exporter text: a windows counter per replica and one replica's batch histogram."""
    lines = [
        "# HELP ray_tw_model_windows_total 30 s windows decoded",
        "# TYPE ray_tw_model_windows_total counter",
    ]
    for replica, value in replicas.items():
        tags = WORKER.format(node=node, worker=replica) + f',deployment="WhisperASR",replica="{replica}"'
        lines.append(f"ray_tw_model_windows_total{{{tags}}} {value}")
    lines += ["# TYPE ray_tw_model_batch_size histogram"]
    tags = WORKER.format(node=node, worker="w") + ',deployment="WhisperASR"'
    running = 0
    for le, count in batches.items():
        running += count
        lines.append(f'ray_tw_model_batch_size_bucket{{{tags},le="{le}"}} {running}')
    lines.append(f"ray_tw_model_batch_size_count{{{tags}}} {running}")
    lines.append(f"ray_tw_model_batch_size_sum{{{tags}}} {running * 2}")
    lines += [
        "# TYPE ray_serve_num_http_requests_total counter",
        f"ray_serve_num_http_requests_total{{{tags}}} 7",
    ]
    return "\n".join(lines) + "\n"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_two_nodes_show_every_replica_and_worker_labels_are_dropped() -> None:
    merged = merge(
        [
            exporter(1, {"r1": 4.0, "r2": 2.0}, {"1": 3, "2": 1, "+Inf": 0}),
            exporter(2, {"r3": 5.0}, {"1": 1, "2": 0, "+Inf": 2}),
        ]
    )
    seen = samples(merged)
    windows = {
        dict(labels)["replica"]: v for (name, labels), v in seen.items() if name == "tw_model_windows_total"
    }
    assert windows == {"r1": 4.0, "r2": 2.0, "r3": 5.0}
    assert sum(windows.values()) == 11.0
    buckets = {
        dict(labels)["le"]: v for (name, labels), v in seen.items() if name == "tw_model_batch_size_bucket"
    }
    assert buckets == {"1": 4.0, "2": 5.0, "+Inf": 7.0}  # cumulative counts of both nodes added up
    assert "WorkerId" not in merged and "NodeAddress" not in merged
    assert "serve_num_http_requests" not in merged  # Serve's own metrics stay on Ray's endpoint


def test_nothing_exported_yet_is_an_empty_section_and_an_unreachable_node_is_left_out() -> None:
    assert merge([]) == ""
    assert scrape(["http://127.0.0.1:9/metrics"]) == []
