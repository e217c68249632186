"""Reading one value out of /metrics text (prometheus_client's own parser).

Every series carries a `replica` label (web/metrics.py); a test names the metric and the
labels it cares about, and the others (replica among them) are not matched.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The sample `name` whose labels include `labels` (None: no such sample)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def metric_labels(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of every sample called `name`."""
    return [dict(s.labels) for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]
