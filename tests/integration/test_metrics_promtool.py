"""The metrics, alerting rules and dashboard queries checked by Prometheus's own promtool (Debian `prometheus`),
and the chart's PrometheusRule rendered by helm from the same rules file."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploymind.api.enums import (
    PHASES,
    PROBE_FAILED,
    PROBE_PASSED,
    PROBE_UNREACHABLE,
    RECONCILE_ERROR,
    RECONCILE_SUCCEEDED,
    RESULT_SUCCEEDED,
)
from deploymind.metrics import Metrics
from world.tools import helm_path

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
CHART = Path(__file__).parents[2] / "charts" / "deploymind"
RULES = CHART / "rules" / "deploymind.rules.yaml"
DASHBOARD = CHART / "dashboards" / "deploymind.json"

pytestmark = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool missing: apt-get install prometheus")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False)


def populated_metrics() -> Metrics:
    """A registry with every metric carrying samples, as after a few rollouts, probes and a revert."""
    metrics = Metrics()
    metrics.reconcile_finished(RECONCILE_SUCCEEDED, 0.2)
    metrics.reconcile_finished(RECONCILE_ERROR, 1.5)
    metrics.rollout_finished(RESULT_SUCCEEDED, "Recreate", 42.0)
    for name in ("web", "api"):
        metrics.set_phase("shop", name, "Deployed")
        metrics.health_check("shop", name, PROBE_PASSED, 0.03)
        metrics.health_check("shop", name, PROBE_FAILED, 2.0)
        metrics.health_check("shop", name, PROBE_UNREACHABLE)
        metrics.set_scan_findings("shop", name, {"HIGH": 2})
        metrics.container_stats("shop", name, 0.05, 32 * 1024 * 1024)
    metrics.revert("shop", "web")
    metrics.transport_call("ssh")
    metrics.transport_call("ssm", error_reason="TransportTimeout")
    metrics.webhook_request("Accepted")
    metrics.history_unavailable.set(0)
    metrics.history_dropped_records.inc(0)
    metrics.history_write_seconds.observe(0.004)
    return metrics


def test_a_scrape_of_every_metric_passes_promtool_check_metrics() -> None:
    result = promtool("check", "metrics", stdin=populated_metrics().exposition().decode())

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_the_alerting_rules_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr  # duplicate rules print FAILED yet exit 0
    assert "SUCCESS" in result.stdout


def test_the_alerts_cover_failing_rollouts_reverts_stalled_objects_and_a_down_operator() -> None:
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}

    assert {"DeployMindRolloutFailing", "DeployMindReverted", "DeployMindStalled", "DeployMindOperatorDown"} <= alerts
    # the rules match phases by name: they must stay spelled as the API spells them
    assert {"Failed", "Degraded", "Pending", "Scanning", "Building", "Deploying", "Baking"} <= set(PHASES)


def _phase_series(name: str, phase: str, values: str) -> dict[str, str]:
    return {"series": f'deploymind_phase{{namespace="shop", name="{name}", phase="{phase}"}}', "values": values}


def _fires(alert: str, eval_time: str, **labels: str) -> dict[str, Any]:
    """An alert_rule_test expecting `alert` with `labels`, its severity and its annotations rendered for them."""
    [rule] = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if r["alert"] == alert]
    annotations = {}
    for key, template in rule["annotations"].items():
        for label, value in labels.items():
            template = template.replace(f"{{{{ $labels.{label} }}}}", value)
        annotations[key] = template
    expected = {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": [expected]}


def _silent(alert: str, eval_time: str) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": []}


def test_the_alerts_fire_on_the_series_the_operator_exports(tmp_path: Path) -> None:
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    _phase_series("web", "Failed", "1x20"),
                    _phase_series("web", "Deployed", "0x20"),
                    _phase_series("api", "Deploying", "1x40"),
                    _phase_series("db", "Degraded", "0x5 1x20"),
                    # the counter starts at 0 (set_phase creates it) so increase() sees the first revert
                    {"series": 'deploymind_reverts_total{namespace="shop", name="web"}', "values": "0x3 1x10"},
                    {"series": 'up{job="shop-deploymind-metrics"}', "values": "1x3 0x10"},
                    {"series": "deploymind_history_unavailable", "values": "0 1x15"},
                ],
                "alert_rule_test": [
                    _fires("DeployMindRolloutFailing", "10m", namespace="shop", name="web"),
                    _fires("DeployMindReverted", "5m", namespace="shop", name="web"),
                    _silent("DeployMindStalled", "20m"),
                    _fires("DeployMindStalled", "35m", namespace="shop", name="api"),
                    _fires("DeployMindDegraded", "22m", namespace="shop", name="db"),
                    _silent("DeployMindOperatorDown", "5m"),
                    _fires("DeployMindOperatorDown", "10m"),
                    _fires("DeployMindHistoryUnavailable", "12m"),
                ],
            }
        ],
    }
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(tests))

    result = promtool("test", "rules", str(test_file))

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    def exprs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["expr"]] if isinstance(node.get("expr"), str) else []
            return found + [e for value in node.values() for e in exprs(value)]
        if isinstance(node, list):
            return [e for item in node for e in exprs(item)]
        return []

    queries = exprs(json.loads(DASHBOARD.read_text()))
    grafana_variables = {"$__rate_interval": "5m", "$namespace": ".*", "$name": ".*"}
    rules = []
    for index, query in enumerate(queries):
        for variable, value in grafana_variables.items():
            query = query.replace(variable, value)
        rules.append({"record": f"dashboard:query_{index}", "expr": query})
    rule_file = tmp_path / "dashboard_queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = promtool("check", "rules", str(rule_file))

    assert len(queries) > 10
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_chart_renders_the_same_rule_groups_as_a_prometheusrule(tmp_path: Path) -> None:
    chart = tmp_path / "deploymind"
    (chart / "templates").mkdir(parents=True)
    shutil.copytree(CHART / "rules", chart / "rules")
    shutil.copy(CHART / "templates" / "prometheusrule.yaml", chart / "templates")
    # a minimal chart around our two files: the real Chart.yaml and values belong to the chart issue
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: deploymind\nversion: 0.1.0\n")
    helm = str(helm_path())

    disabled = subprocess.run([helm, "template", "rel", str(chart)], capture_output=True, text=True, check=False)
    enabled = subprocess.run(
        [
            helm,
            "template",
            "rel",
            str(chart),
            "--namespace",
            "ops",
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "prometheusRule.labels.release=kube-prometheus",
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert disabled.returncode == 0, disabled.stderr
    assert "PrometheusRule" not in disabled.stdout
    assert enabled.returncode == 0, enabled.stderr
    [rule] = [doc for doc in yaml.safe_load_all(enabled.stdout) if doc]
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert (rule["metadata"]["namespace"], rule["metadata"]["labels"]["release"]) == ("ops", "kube-prometheus")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
