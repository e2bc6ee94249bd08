"""Private directories for the parts of the test world, reachable by the non-root users that need them."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def make_world_root(prefix: str = "dmworld-") -> Path:
    """A new directory under /tmp that other users may traverse (sshd's login user and `postgres` need to).

    pytest's own tmp_path lives under a 0700 directory, which those users cannot enter.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o711)
    return root


def private_dir(root: Path, name: str, mode: int = 0o711) -> Path:
    """`root/name`, created with `mode` (traversable by default)."""
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    return path


def remove_tree(path: Path) -> None:
    """Remove a world directory; a leftover file must never fail a session's teardown."""
    shutil.rmtree(path, ignore_errors=True)
