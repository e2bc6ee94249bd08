"""The Grafana dashboard parses and queries only metrics the operator exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploymind.metrics import Metrics

DASHBOARD = Path(__file__).parents[2] / "charts" / "deploymind" / "dashboards" / "deploymind.json"
METRIC_NAME = re.compile(r"\bdeploymind_[a-z0-9_]+")
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def exported_sample_names() -> set[str]:
    """Every sample name the operator's registry can expose, from each family's name and type."""
    return {family.name + suffix for family in Metrics().registry.collect() for suffix in SAMPLE_SUFFIXES[family.type]}


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    queried = {name for text in strings(load()) for name in METRIC_NAME.findall(text)}

    assert queried, "the dashboard queries no deploymind metric"
    assert queried - exported_sample_names() == set()


def test_the_dashboard_shows_rollouts_reverts_health_latency_and_container_resources() -> None:
    queried = {name for text in strings(load()["panels"]) for name in METRIC_NAME.findall(text)}

    assert {
        "deploymind_rollouts_total",
        "deploymind_rollout_duration_seconds_bucket",
        "deploymind_reverts_total",
        "deploymind_health_check_latency_seconds_bucket",
        "deploymind_container_cpu_ratio",
        "deploymind_container_memory_bytes",
    } <= queried


def test_panels_have_unique_ids_use_the_datasource_variable_and_fit_the_grid() -> None:
    panels = load()["panels"]
    ids = [panel["id"] for panel in panels]

    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert all(target["expr"] for target in panel["targets"])


def test_per_object_panels_follow_the_namespace_and_name_variables() -> None:
    variables = {variable["name"] for variable in load()["templating"]["list"]}
    per_object = [
        target["expr"]
        for panel in load()["panels"]
        for target in panel.get("targets", [])
        if "deploymind_container_" in target["expr"] or "deploymind_health_check" in target["expr"]
    ]

    assert {"datasource", "namespace", "name"} <= variables
    assert per_object
    assert all('namespace=~"$namespace", name=~"$name"' in expr for expr in per_object)
