"""Every replica's `tw_*` metrics in one scrape: read from Ray's metrics exporter on each node.

Each Ray node serves Prometheus text for the workers on it (`ray_tw_*`, one series per worker, labelled
with the Serve deployment and replica). This module reads them all and keeps the labels that say what
was measured (deployment, replica, histogram bucket), so a single `/metrics` shows the whole app however
many replicas and nodes it runs on. Ray exports with a delay of a few seconds.
"""

from __future__ import annotations

import logging
import urllib.request
from collections import defaultdict
from collections.abc import Iterable

logger = logging.getLogger("tuned_whisper.metrics")
RAY_PREFIX = "ray_"
OURS = "ray_tw_"
KEEP = frozenset({"application", "deployment", "replica", "le"})
TIMEOUT_S = 2.0


def exporter_urls() -> list[str]:
    """The Prometheus endpoint of every alive node of the Ray cluster this process is connected to."""
    import ray

    return [
        f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for node in ray.nodes()
        if node.get("Alive") and node.get("MetricsExportPort")
    ]


def scrape(urls: Iterable[str]) -> list[str]:
    """The text of each endpoint that answered; one that did not is logged and left out."""
    texts = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                texts.append(response.read().decode("utf-8", errors="replace"))
        except OSError as error:
            logger.warning("could not read Ray's metrics at %s: %s", url, error)
    return texts


def merge(texts: Iterable[str]) -> str:
    """The `tw_*` families of these exporter texts, summed over what tells series apart only by worker
    (process, node, session), in Prometheus text format without Ray's `ray_` prefix."""
    from prometheus_client.parser import text_string_to_metric_families

    kinds: dict[str, str] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = defaultdict(dict)
    for text in texts:
        for family in text_string_to_metric_families(text):
            if not family.name.startswith(OURS):
                continue
            name = family.name.removeprefix(RAY_PREFIX)
            kinds[name] = family.type
            for sample in family.samples:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k in KEEP))
                key = (sample.name.removeprefix(RAY_PREFIX), labels)
                values[name][key] = values[name].get(key, 0.0) + sample.value
    lines = []
    for name in sorted(values):
        lines.append(f"# TYPE {name} {kinds[name]}")
        for (sample, labels), value in sorted(values[name].items(), key=_bucket_order):
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{sample}{{{rendered}}} {value:g}" if rendered else f"{sample} {value:g}")
    return "\n".join(lines) + ("\n" if lines else "")


def cluster_metrics() -> str:
    """`merge(scrape(exporter_urls()))`: every replica's `tw_*` metrics, as Ray last exported them."""
    return merge(scrape(exporter_urls()))


def _bucket_order(item: tuple[tuple[str, tuple[tuple[str, str], ...]], float]) -> tuple[object, ...]:
    (sample, labels), _ = item
    rest = tuple((k, v) for k, v in labels if k != "le")
    le = dict(labels).get("le")
    return (rest, sample, float(le) if le is not None else 0.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
