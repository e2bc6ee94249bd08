"""`deploymind validate` names the field and the rule for every bad manifest, and passes every good one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploymind.api.crd import spec_schema
from deploymind.api.validate import PATTERN_HINTS, Report, spec_problems, validate_files, validate_text
from deploymind.cli import main

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "tests" / "data" / "manifests"
VALID = sorted((MANIFESTS / "valid").glob("*.yaml"))
INVALID = sorted((MANIFESTS / "invalid").glob("*.yaml"))
DEPLOYMENT = """\
apiVersion: deploymind.io/v1alpha1
kind: Deployment
metadata:
  name: {name}
spec:
  image: nginx:1.27
  target: {{transport: local}}
"""


def expectation(path: Path) -> tuple[str, str]:
    """The `# expect: <field path>: <substring>` line of an invalid manifest."""
    found = re.search(r"^# expect: (\S+): (.+)$", path.read_text(), re.MULTILINE)
    assert found, f"{path.name} has no '# expect: <field path>: <message>' line"
    return found.group(1), found.group(2).strip()


def check(text: str, source: str = "x.yaml") -> Report:
    report = Report()
    validate_text(text, source, report)
    return report


def test_corpus_is_large_enough() -> None:
    assert len(VALID) >= 10
    assert len(INVALID) >= 30


@pytest.mark.parametrize("manifest", VALID, ids=lambda p: p.stem)
def test_valid_manifest_passes(manifest: Path) -> None:
    report = validate_files([str(manifest)])
    assert report.problems == []
    assert report.checked == manifest.read_text().count("kind: Deployment")


@pytest.mark.parametrize("manifest", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_gets_one_line_naming_the_field_and_the_rule(manifest: Path) -> None:
    field, message = expectation(manifest)
    report = validate_files([str(manifest)])
    assert len(report.problems) == 1, report.problems
    [line] = report.problems
    prefix = re.escape(str(manifest)) + r": default/[^:]+: "
    assert re.match(prefix + re.escape(field) + ": ", line), line
    assert message.lower() in line.lower()


def test_problem_line_has_file_namespace_name_wire_path_and_what_is_allowed() -> None:
    text = DEPLOYMENT.format(name="web").replace("  name: web\n", "  name: web\n  namespace: shop\n").replace(
        "target: {transport: local}", "target: {transport: ssm, instanceId: i-nothex0}")
    assert check(text, "apps.yaml").problems == [
        "apps.yaml: shop/web: spec.target.instanceId: must match ^i-[0-9a-f]{8,17}$ "
        '(an EC2 instance id such as i-0123456789abcdef0), got "i-nothex0"']


def test_rule_errors_extend_the_location_with_their_field_path_including_list_indexes() -> None:
    env = "".join(f"    - {{name: {name}, value: '1'}}\n" for name in ("A", "B", "PORT"))
    text = DEPLOYMENT.format(name="web") + "  container:\n    env:\n" + env
    [line] = check(text).problems
    assert line.startswith("x.yaml: default/web: spec.container.env[2].name: PORT is set by DeployMind")


def test_every_problem_of_a_document_is_reported_not_just_the_first() -> None:
    text = DEPLOYMENT.format(name="web") + "  container: {port: 0}\n  revisionHistoryLimit: 0\n  bogus: 1\n"
    paths = [line.split(": ")[2] for line in check(text).problems]
    assert sorted(paths) == ["spec.bogus", "spec.container.port", "spec.revisionHistoryLimit"]


def test_numbers_and_booleans_in_quotes_are_refused_as_the_apiserver_does() -> None:
    text = DEPLOYMENT.format(name="web") + '  rollback: {auto: "yes", bakeSeconds: "60"}\n'
    assert sorted(check(text).problems) == [
        'x.yaml: default/web: spec.rollback.auto: must be true or false, not the string "yes"',
        'x.yaml: default/web: spec.rollback.bakeSeconds: must be an integer, not the string "60"',
    ]


def test_python_field_names_are_unknown_fields_on_the_wire() -> None:
    text = DEPLOYMENT.format(name="web") + "  revision_history_limit: 3\n"
    assert check(text).problems == ["x.yaml: default/web: spec.revision_history_limit: unknown field"]


def test_unknown_fields_outside_spec_are_reported_too() -> None:
    text = DEPLOYMENT.format(name="web").replace("  name: web\n", "  name: web\n  labelz: {a: b}\n") + "specs: {}\n"
    assert sorted(check(text).problems) == [
        "x.yaml: default/web: metadata.labelz: unknown field",
        "x.yaml: default/web: specs: unknown field",
    ]


def test_metadata_name_is_required_and_a_dns_subdomain() -> None:
    nameless = DEPLOYMENT.format(name="web").replace("  name: web\n", "  labels: {a: b}\n")
    assert check(nameless).problems == ["x.yaml: default/<document 1>: metadata.name: required"]
    [line] = check(DEPLOYMENT.format(name="-web")).problems
    assert line.startswith("x.yaml: default/-web: metadata.name: must be a DNS-1123 subdomain")


def test_every_document_of_a_stream_is_checked_and_others_are_noted() -> None:
    text = "\n---\n".join([
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}",
        DEPLOYMENT.format(name="good"),
        DEPLOYMENT.format(name="bad") + "  suspend: maybe\n",
        "",
    ])
    report = check(text)
    assert report.checked == 2
    assert report.problems == ['x.yaml: default/bad: spec.suspend: must be true or false, not the string "maybe"']
    assert report.notes == ["x.yaml: document 1: skipped v1 Secret (not a deploymind.io/v1alpha1 Deployment)"]


def test_a_list_is_checked_item_by_item() -> None:
    item = DEPLOYMENT.format(name="in-list").replace("\n", "\n    ")
    report = check(f"apiVersion: v1\nkind: List\nitems:\n  - {item}\n")
    assert (report.checked, report.problems) == (1, [])


def test_an_unserved_version_of_our_group_is_a_problem_not_a_skip() -> None:
    report = check(DEPLOYMENT.format(name="web").replace("v1alpha1", "v1"))
    assert report.problems == ["x.yaml: document 1: deploymind.io/v1 Deployment is not served; use apiVersion: "
                               "deploymind.io/v1alpha1, kind: Deployment"]


def test_malformed_yaml_is_reported_with_its_line_after_checking_what_came_before() -> None:
    text = DEPLOYMENT.format(name="fine") + "---\napiVersion: v1\nkind: ConfigMap\ndata: {a: [1, 2}\n"
    report = check(text, "broken.yaml")
    assert report.checked == 1
    [line] = report.problems
    assert re.fullmatch(r"broken\.yaml:11: invalid YAML: .+", line), line


def test_a_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    report = validate_files([str(tmp_path / "nope.yaml")])
    assert report.problems == [f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"]


def test_a_directory_means_its_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(DEPLOYMENT.format(name="a"))
    (tmp_path / "b.yml").write_text(DEPLOYMENT.format(name="b"))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    assert validate_files([str(tmp_path)]).checked == 2


def test_every_pattern_of_the_spec_has_a_plain_words_hint() -> None:
    patterns: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if isinstance(node.get("pattern"), str):
            patterns.add(node["pattern"])
        for sub in node.get("properties", {}).values():
            walk(sub)
        if isinstance(node.get("items"), dict):
            walk(node["items"])

    walk(spec_schema())
    assert patterns - set(PATTERN_HINTS) == set()


def test_spec_problems_is_empty_for_a_good_spec() -> None:
    assert spec_problems({"image": "nginx", "target": {"transport": "local"}}) == []
    assert spec_problems(None) == [("spec", "must be an object (a mapping of fields), not null")]


def test_cli_exits_0_for_valid_files_and_1_with_one_line_per_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(VALID[0]), "-f", str(VALID[1])]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "Deployment(s) valid" in err
    assert main(["validate", "-f", str(INVALID[0]), "-f", str(INVALID[1])]) == 1
    out, _ = capsys.readouterr()
    assert out.splitlines() == validate_files([str(INVALID[0]), str(INVALID[1])]).problems


def test_cli_reads_stdin_for_dash_and_never_prints_a_traceback() -> None:
    bad = DEPLOYMENT.format(name="web") + "  container: {port: 70000}\n---\n: : [\n"
    done = subprocess.run([sys.executable, "-m", "deploymind", "validate", "-f", "-"], input=bad,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "<stdin>: default/web: spec.container.port: must be between 1 and 65535, got 70000",
        "<stdin>:10: invalid YAML: " + done.stdout.splitlines()[1].split("invalid YAML: ")[1],
    ]
    assert "Traceback" not in done.stderr
