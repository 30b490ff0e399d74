"""Reading a Prometheus text exposition into ``{(sample name, labels): value}``."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples) -> Samples:
    """What changed between two scrapes (the process's counts are shared by all tests)."""
    keys = set(before) | set(after)
    changes = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in keys}
    return {key: change for key, change in changes.items() if change}
