"""Records and settings of the history store: pure data, no database."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deploymind.api.enums import RESULT_FAILED, TRIGGER_SPEC_CHANGE
from deploymind.history.config import HistoryConfigError, HistorySettings
from deploymind.history.envkey import EnvKeyError, load_or_create_key
from deploymind.history.records import (
    MAX_LOG_LINE_CHARS,
    MAX_LOG_LINES,
    CandidateLogs,
    RolloutAttempt,
    StepTransition,
    env_fingerprint,
)

KEY = b"k" * 32


def test_env_fingerprint_keeps_names_and_a_hash_but_never_a_value() -> None:
    names, digest = env_fingerprint({"TOKEN": "s3cr3t-value", "PORT": "8080"}, KEY)

    assert names == ("PORT", "TOKEN")
    assert "s3cr3t-value" not in digest and len(digest) == 64


def test_env_fingerprint_changes_when_a_value_changes_and_not_with_order() -> None:
    _, first = env_fingerprint({"A": "1", "B": "2"}, KEY)
    _, reordered = env_fingerprint({"B": "2", "A": "1"}, KEY)
    _, changed = env_fingerprint({"A": "1", "B": "3"}, KEY)

    assert first == reordered
    assert first != changed


def test_env_fingerprint_is_keyed_so_a_guess_cannot_be_checked_without_the_key() -> None:
    env = {"PIN": "1234"}
    canonical = json.dumps(sorted(env.items()), separators=(",", ":")).encode()

    _, digest = env_fingerprint(env, KEY)

    assert digest != hashlib.sha256(canonical).hexdigest()
    assert digest != env_fingerprint(env, b"another key of enough bytes")[1]
    with pytest.raises(ValueError, match="non-empty key"):
        env_fingerprint(env, b"")


def test_finishing_an_attempt_keeps_its_id_and_measures_its_duration() -> None:
    started = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    attempt = RolloutAttempt(
        uid="u",
        namespace="ns",
        name="app",
        generation=3,
        revision="a" * 12 + "-" + "b" * 8,
        trigger=TRIGGER_SPEC_CHANGE,
        started_at=started,
    )

    finished = attempt.finish(RESULT_FAILED, "CandidateUnhealthy", "never answered /health", at=started + timedelta(seconds=42))

    assert (finished.id, finished.result, finished.reason) == (attempt.id, RESULT_FAILED, "CandidateUnhealthy")
    assert attempt.duration_seconds is None
    assert finished.duration_seconds == 42.0


def test_attempts_get_distinct_ids_without_asking_the_database() -> None:
    one = RolloutAttempt(uid="u", namespace="ns", name="app", generation=1, revision="r", trigger=TRIGGER_SPEC_CHANGE)
    two = RolloutAttempt(uid="u", namespace="ns", name="app", generation=1, revision="r", trigger=TRIGGER_SPEC_CHANGE)

    assert one.id != two.id


def test_step_duration_is_unknown_until_the_step_finishes() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    running = StepTransition(attempt_id="a", uid="u", step="build", status="Running", started_at=start)
    done = StepTransition(
        attempt_id="a",
        uid="u",
        step="build",
        status="Succeeded",
        started_at=start,
        finished_at=start + timedelta(seconds=3),
    )

    assert running.duration_seconds is None
    assert done.duration_seconds == 3.0


def test_a_refused_candidates_log_keeps_its_last_50_lines_each_cut_to_2000_characters() -> None:
    lines = [f"line {n}" for n in range(80)] + ["x" * 5_000, "the last line"]

    logs = CandidateLogs(uid="u", revision="r", lines=tuple(lines))

    assert (MAX_LOG_LINES, MAX_LOG_LINE_CHARS) == (50, 2_000)
    assert len(logs.lines) == 50
    assert logs.lines[0] == "line 32" and logs.lines[-1] == "the last line"
    assert len(logs.lines[-2]) == 2_000 and logs.lines[-2].endswith("…")


def test_database_defaults_to_a_sqlite_file_in_the_state_dir(tmp_path: Path) -> None:
    settings = HistorySettings.from_env(tmp_path, environ={})

    assert settings.database_url == f"sqlite:///{tmp_path}/history.sqlite3"
    assert settings.retention_days == 90
    assert settings.key_file == tmp_path / "history-env.key"


def test_database_url_and_retention_come_from_the_environment(tmp_path: Path) -> None:
    environ = {"DEPLOYMIND_DATABASE_URL": "postgresql+psycopg://dm@db/dm", "DEPLOYMIND_HISTORY_RETENTION_DAYS": "7"}

    settings = HistorySettings.from_env(tmp_path, environ=environ)

    assert (settings.database_url, settings.retention_days) == ("postgresql+psycopg://dm@db/dm", 7)
    assert HistorySettings.from_env(tmp_path, {"DEPLOYMIND_HISTORY_KEY_FILE": "/keys/env"}).key_file == Path("/keys/env")


@pytest.mark.parametrize("days", ["0", "-3", "ninety"])
def test_a_retention_that_is_not_a_positive_number_of_days_is_refused(tmp_path: Path, days: str) -> None:
    with pytest.raises(HistoryConfigError) as raised:
        HistorySettings.from_env(tmp_path, environ={"DEPLOYMIND_HISTORY_RETENTION_DAYS": days})

    assert raised.value.reason == "InvalidRetention"
    assert "DEPLOYMIND_HISTORY_RETENTION_DAYS" in str(raised.value)


def test_the_env_key_is_made_once_with_mode_0600_and_read_back_after(tmp_path: Path) -> None:
    path = tmp_path / "state" / "history-env.key"

    first = load_or_create_key(path)
    again = load_or_create_key(path)

    assert first == again and len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_too_short_env_key_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "history-env.key"
    path.write_bytes(b"short")

    with pytest.raises(EnvKeyError, match="Delete the file") as refused:
        load_or_create_key(path)
    assert refused.value.reason == "InvalidHistoryKey"
