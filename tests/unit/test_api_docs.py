"""docs/api.md says what the API model says: its field tables are the generated ones, and every reason, phase and
condition type of the model is documented."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

from deploymind.api import reasons
from deploymind.api.status import ConditionType, Phase

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"


def load_generator() -> ModuleType:
    """scripts/gen-api-docs as a module (it has no .py suffix: it is a command)."""
    path = ROOT / "scripts" / "gen-api-docs"
    loader = importlib.machinery.SourceFileLoader("gen_api_docs", str(path))
    spec = importlib.util.spec_from_loader("gen_api_docs", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_field_tables_in_docs_api_md_match_the_model() -> None:
    current = API_DOC.read_text()
    fresh: str = load_generator().render(current)
    assert fresh == current, "docs/api.md drifted from the API model: run scripts/gen-api-docs"


def test_every_field_of_the_spec_has_a_row() -> None:
    text = API_DOC.read_text()
    for heading, field in [("### spec.target.ssh", "knownHostsSecretRef"), ("### spec.healthCheck", "failureThreshold"),
                           ("### spec.container.env[]", "valueFrom"), ("### status", "lastHandledReconcileAt")]:
        section = text.split(heading + "\n", 1)[1].split("\n### ", 1)[0]
        assert f"| `{field}` |" in section, f"{heading} has no row for {field}"


def test_every_reason_is_documented() -> None:
    text = API_DOC.read_text()
    names = [value for key, value in vars(reasons).items() if key.isupper() and isinstance(value, str)]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"docs/api.md does not explain these reasons from api/reasons.py: {missing}"


def test_every_phase_and_condition_type_is_documented() -> None:
    text = API_DOC.read_text()
    phases = text.split("## Phases", 1)[1].split("\n## ", 1)[0]
    conditions = text.split("## Conditions", 1)[1].split("\n## ", 1)[0]
    assert [p.value for p in Phase if f"| `{p.value}` |" not in phases] == []
    assert [c.value for c in ConditionType if f"| `{c.value}` |" not in conditions] == []


def test_a_hand_edited_table_is_regenerated_from_the_model() -> None:
    generator = load_generator()
    stale = API_DOC.read_text().replace("| `failureThreshold` |", "| `failureThreshold` (renamed) |", 1)
    assert generator.render(stale) != stale
