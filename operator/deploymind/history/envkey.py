"""The operator's secret key for env fingerprints: 32 random bytes in a 0600 file, made on first start.

Every replica must use the same key for their hashes to compare (mount one Secret at the key file's path with
`DEPLOYMIND_HISTORY_KEY_FILE`); a lost key only means hashes from before and after it no longer compare.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Final

KEY_BYTES: Final = 32
_MIN_KEY_BYTES: Final = 16


class EnvKeyError(OSError):
    """The key file cannot be used; `reason` is CamelCase, the message says what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def load_or_create_key(path: Path) -> bytes:
    """Read the key at `path`, or create it (mode 0600, exclusively: two replicas starting at once agree)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as created:
            created.write(secrets.token_bytes(KEY_BYTES))
    key = path.read_bytes()
    if len(key) < _MIN_KEY_BYTES:
        raise EnvKeyError(
            "InvalidHistoryKey",
            f"{path} holds {len(key)} bytes; an env fingerprint key needs at least {_MIN_KEY_BYTES}. "
            "Delete the file to have a new one made, or put the key your other replicas use there.",
        )
    return key
