"""Where the history lives and how long it is kept, read from the operator's environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DATABASE_URL_ENV: Final = "DEPLOYMIND_DATABASE_URL"
RETENTION_DAYS_ENV: Final = "DEPLOYMIND_HISTORY_RETENTION_DAYS"
KEY_FILE_ENV: Final = "DEPLOYMIND_HISTORY_KEY_FILE"
KEY_FILE: Final = "history-env.key"
DEFAULT_RETENTION_DAYS: Final = 90
SQLITE_FILE: Final = "history.sqlite3"


class HistoryConfigError(ValueError):
    """A history setting cannot be used; `reason` is CamelCase, the message says which variable to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class HistorySettings:
    database_url: str
    key_file: Path
    """The HMAC key of env fingerprints (history.envkey); replicas sharing a database should share it too."""
    retention_days: int = DEFAULT_RETENTION_DAYS

    @classmethod
    def from_env(cls, state_dir: Path, environ: Mapping[str, str] | None = None) -> HistorySettings:
        """`DEPLOYMIND_DATABASE_URL`, else a SQLite file in `state_dir` (a persistent volume in a cluster:
        the history is lost with the pod otherwise); retention from `DEPLOYMIND_HISTORY_RETENTION_DAYS`."""
        env = os.environ if environ is None else environ
        url = env.get(DATABASE_URL_ENV, "").strip() or f"sqlite:///{state_dir / SQLITE_FILE}"
        raw_days = env.get(RETENTION_DAYS_ENV, "").strip() or str(DEFAULT_RETENTION_DAYS)
        try:
            days = int(raw_days)
        except ValueError:
            days = 0
        if days < 1:
            raise HistoryConfigError(
                "InvalidRetention",
                f"{RETENTION_DAYS_ENV}={raw_days!r} is not a whole number of days >= 1; set it to e.g. 90.",
            )
        key_file = Path(env.get(KEY_FILE_ENV, "").strip() or state_dir / KEY_FILE)
        return cls(database_url=url, key_file=key_file, retention_days=days)
