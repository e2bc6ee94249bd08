"""The Helm chart (charts/deploymind): lint, render over a matrix of values, Kubernetes 1.35 schemas, RBAC and pod
security policy on what it renders, the values schema's refusals, its CRD, and Trivy's misconfiguration scan."""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import deploymind
from deploymind.api.targetpolicy import load_target_policy
from deploymind.cli import build_parser
from deploymind.cli_history import DEFAULT_OPERATOR_NAMESPACE, DEFAULT_OPERATOR_PORT, DEFAULT_OPERATOR_SERVICE
from deploymind.controller.revisionkey import SECRET_NAME as REVISION_KEY_SECRET
from deploymind.settings import Settings
from world.tools import helm_path, trivy_path

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "deploymind"
CRD_FILE = ROOT / "crds" / "deployments.deploymind.io.yaml"
RELEASE = "deploymind"
NAMESPACE = DEFAULT_OPERATOR_NAMESPACE
KUBERNETES = "1.35"
# Kinds of the Prometheus Operator: kubernetes-validate has no schemas for CRDs, so only these may go unchecked.
WITHOUT_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
POD_NAME_ENV = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
POD_NAMESPACE_ENV = {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}

POLICY = {"rules": [{"name": "team-a", "namespaces": ["team-a", "team-a-*"], "sshHosts": ["10.0.1.0/24"]},
                    {"namespaces": ["team-*"], "instances": {"requireTags": {"environment": "production"}}}]}
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ha-postgresql": {"replicas": 2, "history": {"databaseUrlSecret": {"name": "deploymind-db"},
                                                 "keySecret": {"name": "deploymind-history-key"}}},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"], "targetPolicy": POLICY},
    "irsa": {"aws": {"roleArn": "arn:aws:iam::123456789012:role/deploymind", "region": "eu-west-1",
                     "buildBucket": "acme-deploymind-builds", "parameterPrefix": "/acme/deploymind",
                     "kmsKeyId": "alias/deploymind"}},
    "static-aws-keys": {"aws": {"credentialsSecret": {"name": "deploymind-aws", "sessionTokenKey": "AWS_SESSION_TOKEN"}},
                        "gitKnownHosts": "github.com ssh-ed25519 "
                                         "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"},
    "monitoring": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
                               "readers": [{"kind": "ServiceAccount", "name": "prometheus-k8s",
                                            "namespace": "monitoring"}]},
                   "prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}},
    "network-policy": {"networkPolicy": {"enabled": True, "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}]}},
}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_path()), *args], capture_output=True, text=True, timeout=60, check=False)


def render(values: dict[str, Any], tmp: Path, *, name: str = "values") -> list[dict[str, Any]]:
    """The chart's manifests for `values` as `helm template` renders them (release deploymind in deploymind-system)."""
    values_file = tmp / f"{name}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", str(values_file))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("chart-values")
    return {case: render(values, tmp, name=case) for case, values in CASES.items()}


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [doc for doc in of_kind(docs, kind) if name is None or doc["metadata"]["name"] == name]
    return doc


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


def operator_grants(docs: list[dict[str, Any]]) -> set[tuple[str, str, str, str, str]]:
    """(namespace or '*', apiGroup, resource, verb, resourceName or '*') the operator's ServiceAccount is granted."""
    roles = {(doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]): doc
             for doc in docs if doc["kind"] in ("Role", "ClusterRole")}
    grants: set[tuple[str, str, str, str, str]] = set()
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE} not in binding["subjects"]:
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace", "*")
        role = roles[(ref["kind"], "" if ref["kind"] == "ClusterRole" else scope, ref["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for resource_name in rule.get("resourceNames", ["*"]):
                            grants.add((scope, group, resource, verb, resource_name))
    return grants


def expand(scope: str, group: str, resources: str, verbs: str, name: str = "*") -> set[tuple[str, str, str, str, str]]:
    return {(scope, group, r, v, name) for r in resources.split() for v in verbs.split()}


# What the operator calls (docs/install.md "What the operator may do"), scope by scope.
CLUSTER_ALWAYS = (expand("*", "authentication.k8s.io", "tokenreviews", "create")
                  | expand("*", "authorization.k8s.io", "subjectaccessreviews", "create"))
IN_OPERATOR_NAMESPACE = (expand(NAMESPACE, "coordination.k8s.io", "leases", "get create update")
                         | expand(NAMESPACE, "", "secrets", "create")
                         | expand(NAMESPACE, "", "secrets", "get", REVISION_KEY_SECRET))


def watched(scope: str) -> set[tuple[str, str, str, str, str]]:
    return (expand(scope, "deploymind.io", "deployments", "get list watch patch")
            | expand(scope, "deploymind.io", "deployments/status", "patch")
            | expand(scope, "", "secrets", "get watch")
            | expand(scope, "", "events", "create"))


def test_chart_version_and_app_version_are_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

    assert chart["apiVersion"] == "v2"
    assert chart["version"] == chart["appVersion"] == package == deploymind.__version__


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_strict_passes(case: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(CASES[case]))

    result = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--values", str(values))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ERROR]" not in result.stdout and "[WARNING]" not in result.stdout


@pytest.mark.parametrize("case", CASES)
def test_every_manifest_validates_against_the_kubernetes_schemas(case: str,
                                                                 rendered: dict[str, list[dict[str, Any]]]) -> None:
    unchecked = set()
    for doc in rendered[case]:
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.add((doc["apiVersion"], doc["kind"]))
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}")
    assert unchecked <= WITHOUT_SCHEMA


def test_the_charts_crd_is_the_committed_crd_kept_on_uninstall(rendered: dict[str, list[dict[str, Any]]],
                                                               tmp_path: Path) -> None:
    crd = one(rendered["defaults"], "CustomResourceDefinition")
    annotations = crd["metadata"].pop("annotations")

    assert crd == yaml.safe_load(CRD_FILE.read_text()), (
        "charts/deploymind/templates/crd.yaml drifted from crds/: copy crds/deployments.deploymind.io.yaml "
        "between its guard lines, keeping the helm.sh/resource-policy annotation")
    assert annotations == {"helm.sh/resource-policy": "keep"}
    assert not of_kind(render({"crds": {"install": False}}, tmp_path), "CustomResourceDefinition")


@pytest.mark.parametrize("case", CASES)
def test_no_rbac_rule_has_a_wildcard(case: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    for role in rendered[case]:
        if role["kind"] in ("Role", "ClusterRole"):
            for rule in role["rules"]:
                for field in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
                    assert not any("*" in item for item in rule.get(field, [])), (role["metadata"]["name"], rule)


def test_watching_every_namespace_grants_exactly_what_the_operator_calls(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert operator_grants(rendered["defaults"]) == CLUSTER_ALWAYS | IN_OPERATOR_NAMESPACE | watched("*")


def test_watching_a_list_grants_secrets_and_deployments_only_in_those_namespaces(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["namespaced"]

    assert operator_grants(docs) == (CLUSTER_ALWAYS | IN_OPERATOR_NAMESPACE | watched("team-a") | watched("team-b"))
    assert operator_container(docs)["args"][-2:] == ["--namespace=team-a", "--namespace=team-b"]


@pytest.mark.parametrize("case", CASES)
def test_secrets_are_never_listed_and_readable_only_where_configured(
        case: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    secrets = {g for g in operator_grants(rendered[case]) if g[2] == "secrets"}
    watch_scopes = CASES[case].get("watchNamespaces") or ["*"]
    allowed = (IN_OPERATOR_NAMESPACE | {g for scope in watch_scopes for g in watched(scope)})

    assert secrets <= allowed
    assert not any(verb in ("list", "update", "patch", "delete") for _, _, _, verb, _ in secrets)
    # People's roles never reach Secrets either.
    for role in rendered[case]:
        if role["kind"] in ("Role", "ClusterRole") and not role["metadata"]["name"].endswith(("-operator",
                                                                                               "-operator-leases")):
            assert all("secrets" not in rule.get("resources", []) for rule in role["rules"])


def test_view_and_edit_aggregate_into_the_built_in_roles(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    view, edit = one(docs, "ClusterRole", "deploymind-view"), one(docs, "ClusterRole", "deploymind-edit")
    reader = one(docs, "ClusterRole", "deploymind-metrics-reader")

    assert {k: v for k, v in view["metadata"]["labels"].items() if k.startswith("rbac.")} == {
        f"rbac.authorization.k8s.io/aggregate-to-{role}": "true" for role in ("view", "edit", "admin")}
    assert {k: v for k, v in edit["metadata"]["labels"].items() if k.startswith("rbac.")} == {
        f"rbac.authorization.k8s.io/aggregate-to-{role}": "true" for role in ("edit", "admin")}
    assert view["rules"] == [{"apiGroups": ["deploymind.io"], "resources": ["deployments", "deployments/status"],
                              "verbs": ["get", "list", "watch"]}]
    assert "deployments/status" not in edit["rules"][0]["resources"]
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]


@pytest.mark.parametrize("case", CASES)
def test_every_container_runs_with_restricted_pod_security(case: str,
                                                          rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = one(rendered[case], "Deployment")["spec"]["template"]["spec"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 65532
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "128Mi"}} in pod["volumes"]


@pytest.mark.parametrize("case", CASES)
def test_no_secret_data_is_in_the_manifests(case: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered[case]
    env = operator_container(docs)["env"]

    assert not of_kind(docs, "Secret")
    for variable in env:
        if (variable["name"].startswith("AWS_") and variable["name"] != "AWS_REGION") or "DATABASE" in variable["name"]:
            assert set(variable) == {"name", "valueFrom"} and "secretKeyRef" in variable["valueFrom"], variable


def test_the_operator_is_started_with_the_flags_the_chart_promises(rendered: dict[str, list[dict[str, Any]]]) -> None:
    container = operator_container(rendered["irsa"])
    env = {variable["name"]: variable for variable in container["env"]}

    assert container["command"] == ["deploymind"]
    assert container["args"][:10] == [
        "run", "--leader-election", "--leader-lease-seconds=15", f"--lease-namespace={NAMESPACE}",
        "--history-auth=kubernetes", "--metrics-auth=kubernetes", "--state-dir=/var/lib/deploymind",
        "--http-host=0.0.0.0", "--http-port=8080", "--max-concurrent-rollouts=4"]
    assert {"--parameter-prefix=/acme/deploymind", "--kms-key-id=alias/deploymind"} <= set(container["args"])
    assert env["POD_NAME"] == POD_NAME_ENV and env["POD_NAMESPACE"] == POD_NAMESPACE_ENV
    assert env["AWS_REGION"]["value"] == "eu-west-1"
    assert env["DEPLOYMIND_BUILD_BUCKET"]["value"] == "acme-deploymind-builds"
    assert {variable["name"] for variable in container["env"]}.isdisjoint({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})


@pytest.mark.parametrize("case", CASES)
def test_deploymind_run_accepts_every_flag_the_chart_passes(case: str,
                                                            rendered: dict[str, list[dict[str, Any]]]) -> None:
    args = build_parser().parse_args(operator_container(rendered[case])["args"])

    assert args.verb == "run"


def test_irsa_annotates_the_service_account_with_the_role(rendered: dict[str, list[dict[str, Any]]]) -> None:
    account = one(rendered["irsa"], "ServiceAccount")

    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/deploymind"}
    assert "annotations" not in one(rendered["defaults"], "ServiceAccount")["metadata"]


def test_static_aws_keys_come_from_the_named_secret(rendered: dict[str, list[dict[str, Any]]]) -> None:
    env = {variable["name"]: variable for variable in operator_container(rendered["static-aws-keys"])["env"]}

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert env[name]["valueFrom"] == {"secretKeyRef": {"name": "deploymind-aws", "key": name}}


def test_git_known_hosts_are_mounted_where_the_operator_reads_them(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["static-aws-keys"]
    [mount] = [m for m in operator_container(docs)["volumeMounts"] if m.get("subPath") == "git_known_hosts"]

    assert mount["mountPath"] == str(Settings(state_dir=Path("/var/lib/deploymind")).git_known_hosts)
    assert one(docs, "ConfigMap")["data"]["git_known_hosts"] == CASES["static-aws-keys"]["gitKnownHosts"]


def test_sqlite_history_gets_a_volume_and_one_replica_that_is_replaced_not_rolled(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    deployment = one(docs, "Deployment")
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}

    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == one(docs, "PersistentVolumeClaim")["metadata"]["name"]
    assert not of_kind(docs, "PodDisruptionBudget")
    assert "DEPLOYMIND_DATABASE_URL" not in {variable["name"] for variable in operator_container(docs)["env"]}


def test_ha_uses_postgresql_a_shared_history_key_a_budget_and_spread(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["ha-postgresql"]
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    env = {variable["name"]: variable for variable in operator_container(docs)["env"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}

    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert env["DEPLOYMIND_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "deploymind-db", "key": "url"}}
    assert env["DEPLOYMIND_HISTORY_KEY_FILE"]["value"] == "/etc/deploymind/history-key/key"
    assert volumes["history-key"]["secret"]["secretName"] == "deploymind-history-key"
    assert "emptyDir" in volumes["state"] and not of_kind(docs, "PersistentVolumeClaim")
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {"topology.kubernetes.io/zone",
                                                                            "kubernetes.io/hostname"}


def test_the_target_policy_is_mounted_where_the_operator_reads_it_and_parses(
        rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    docs = rendered["namespaced"]
    container = operator_container(docs)
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/deploymind/target-policy.yaml"]
    policy_file = tmp_path / "target-policy.yaml"
    policy_file.write_text(one(docs, "ConfigMap")["data"][mount["subPath"]])

    assert "--target-policy=/etc/deploymind/target-policy.yaml" in container["args"]
    assert len(load_target_policy(policy_file).rules) == 2
    assert "checksum/config" in one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert not any(arg.startswith("--target-policy") for arg in operator_container(rendered["defaults"])["args"])


def test_the_service_is_where_deploymind_history_looks_and_readers_may_proxy_to_it(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    service = one(docs, "Service")
    reader = one(docs, "Role", f"{DEFAULT_OPERATOR_SERVICE}-history-reader")
    binding = one(docs, "RoleBinding", f"{DEFAULT_OPERATOR_SERVICE}-history-reader")

    assert (service["metadata"]["namespace"], service["metadata"]["name"]) == (DEFAULT_OPERATOR_NAMESPACE,
                                                                               DEFAULT_OPERATOR_SERVICE)
    assert service["spec"]["ports"] == [{"name": DEFAULT_OPERATOR_PORT, "port": 8080, "targetPort": "http",
                                         "protocol": "TCP"}]
    assert reader["rules"] == [{"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get"],
                                "resourceNames": [DEFAULT_OPERATOR_SERVICE, f"{DEFAULT_OPERATOR_SERVICE}:http",
                                                  f"{DEFAULT_OPERATOR_SERVICE}:8080"]}]
    assert binding["subjects"] == [{"kind": "Group", "name": "system:authenticated",
                                    "apiGroup": "rbac.authorization.k8s.io"}]


def test_the_service_monitor_sends_prometheus_token_and_readers_are_bound(
        rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    docs = rendered["monitoring"]
    [endpoint] = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    binding = one(docs, "ClusterRoleBinding", "deploymind-metrics-reader")
    open_metrics = render({"metrics": {"auth": "none", "serviceMonitor": {"enabled": True}}}, tmp_path)

    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}]
    assert "bearerTokenFile" not in one(open_metrics, "ServiceMonitor")["spec"]["endpoints"][0]
    assert "--metrics-auth=none" in operator_container(open_metrics)["args"]
    dashboard = one(docs, "ConfigMap", "deploymind-dashboard")
    assert json.loads(dashboard["data"]["deploymind.json"]) == json.loads((CHART / "dashboards" / "deploymind.json")
                                                                           .read_text())
    assert one(docs, "PrometheusRule")["spec"] == yaml.safe_load((CHART / "rules" / "deploymind.rules.yaml").read_text())
    assert not {"ServiceMonitor", "PrometheusRule"} & {doc["kind"] for doc in rendered["defaults"]}


def test_the_network_policy_opens_only_the_http_port(rendered: dict[str, list[dict[str, Any]]]) -> None:
    policy = one(rendered["network-policy"], "NetworkPolicy")["spec"]

    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert not of_kind(rendered["defaults"], "NetworkPolicy")


@pytest.mark.parametrize(("values", "expected"), [
    ({"replicas": 2}, ["at '/replicas': maximum: got 2, want 1",
                       "at '/history/databaseUrlSecret/name': minLength: got 0, want 1",
                       "at '/history/keySecret/name': minLength: got 0, want 1"]),
    ({"watchNamespaces": "team-a"}, ["at '/watchNamespaces': got string, want array"]),
    ({"watchNamespaces": ["Team_A"]}, ["at '/watchNamespaces/0'"]),
    ({"metrics": {"auth": "maybe"}}, ["at '/metrics/auth': value must be one of 'kubernetes', 'none'"]),
    ({"aws": {"roleArn": "arn:aws:iam::123456789012:role/x", "credentialsSecret": {"name": "keys"}}},
     ["at '/aws/roleArn'", "at '/aws/credentialsSecret/name'"]),
    ({"aws": {"roleArn": "my-role"}}, ["at '/aws/roleArn'"]),
    ({"aws": {"credentialsSecret": {"name": "AWS_Keys"}}}, ["at '/aws/credentialsSecret/name'"]),
    ({"targetPolicy": {"rules": [{"sshHosts": ["10.0.0.1"]}]}}, ["at '/targetPolicy/rules/0': missing property 'namespaces'"]),
    ({"replicsa": 2}, ["additional properties 'replicsa' not allowed"]),
])
def test_bad_values_are_refused_naming_the_value(values: dict[str, Any], expected: list[str], tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))

    result = helm("template", RELEASE, str(CHART), "--values", str(values_file))

    assert result.returncode == 1
    assert "values don't meet the specifications of the schema" in result.stderr
    for text in expected:
        assert text in result.stderr


def test_an_irsa_role_with_an_existing_service_account_is_refused_not_dropped(tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump({"serviceAccount": {"create": False},
                                           "aws": {"roleArn": "arn:aws:iam::123456789012:role/deploymind"}}))

    result = helm("template", RELEASE, str(CHART), "--values", str(values_file))

    assert result.returncode == 1
    assert "aws.roleArn needs serviceAccount.create=true" in result.stderr


def trivy_findings(directory: Path, cache: Path) -> Iterator[tuple[str, str, str, str]]:
    """(file, check id, severity, message) of every HIGH or CRITICAL misconfiguration Trivy reports."""
    result = subprocess.run(
        [str(trivy_path()), "config", "--cache-dir", str(cache), "--skip-check-update", "--misconfig-scanners",
         "kubernetes", "--severity", "HIGH,CRITICAL", "--format", "json", "--quiet", str(directory)],
        capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr
    for target in json.loads(result.stdout).get("Results", []):
        for finding in target.get("Misconfigurations", []):
            yield target["Target"], finding["ID"], finding["Severity"], finding["Message"]


def test_trivy_finds_nothing_high_or_critical_but_the_cluster_wide_secret_read(
        rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for case, docs in rendered.items():
        # The CRD is the same in every case: scanned once (it is most of Trivy's work).
        kept = [doc for doc in docs if case == "defaults" or doc["kind"] != "CustomResourceDefinition"]
        (manifests / f"{case}.yaml").write_text(yaml.safe_dump_all(kept))

    findings = set(trivy_findings(manifests, tmp_path / "trivy-cache"))

    # Watching every namespace means reading the Secrets Deployments name in any of them (get and watch, which
    # Trivy rightly counts as reading them all): the one finding, documented in docs/install.md. A list of
    # watchNamespaces confines it to Roles in those namespaces.
    secret_read = "ClusterRole 'deploymind-operator' shouldn't have access to manage resource 'secrets'"
    assert findings == {(f"{case}.yaml", "KSV041", "CRITICAL", secret_read)
                        for case in CASES if not CASES[case].get("watchNamespaces")}
