"""Every example users copy passes `deploymind validate`, documents itself, and carries no real secret."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploymind.api.validate import validate_files

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REQUIRED = ["ssm-minimal.yaml", "ssh-with-key.yaml", "env-from-secret.yaml", "prebuilt-image.yaml"]
ALL = sorted(EXAMPLES.rglob("*.yaml"))


def test_the_documented_examples_exist() -> None:
    assert {p.name for p in EXAMPLES.glob("*.yaml")} >= set(REQUIRED)


@pytest.mark.parametrize("example", ALL, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_passes_validate(example: Path) -> None:
    report = validate_files([str(example)])
    assert report.problems == []


@pytest.mark.parametrize("name", REQUIRED)
def test_example_holds_a_deployment_and_explains_itself_in_comments(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    assert validate_files([str(EXAMPLES / name)]).checked >= 1
    header = [line for line in text.splitlines()[:30] if line.startswith("#")]
    assert len(header) >= 3, f"{name} must open with comments that say what it does and how to use it"


@pytest.mark.parametrize("name", REQUIRED)
def test_example_secrets_hold_only_placeholders_and_say_how_to_create_real_ones(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    secrets = [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "Secret"]
    for secret in secrets:
        assert "data" not in secret, "placeholders go in stringData, where they are readable as placeholders"
        for key, value in secret["stringData"].items():
            assert "PLACEHOLDER" in value, f"{secret['metadata']['name']}.{key} must be an obvious placeholder"
    if secrets:
        assert "kubectl create secret" in text
