"""Whether a commit's tree stays inside itself: no symlink, and no build path, may lead out of the extracted tree.

Git stores a symlink as plain data, so any commit can carry one to anywhere. Extracted on the host, a build
context or Dockerfile linked to the login user's home would put its SSH keys or `~/.docker/config.json` into the
image, or into the build's error output and from there into status and Events. So a tree with a symlink that
points outside it (absolute, or relative and climbing out through `..`) is refused before anything is sent.

The resolution is done on the tree's own list of symlinks, as the kernel would do it after extraction: a link's
target is followed component by component, so a chain of links that only together climb out is caught too.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# As the kernel's own limit on symlinks followed in one path lookup (ELOOP).
MAX_LINKS = 40
# How many escaping symlinks a message names (the rest are counted).
MAX_NAMED = 5


@dataclass(frozen=True)
class Entry:
    """One member of the tree: its path inside it and, for a symlink, the target as the commit writes it."""

    path: str
    link_target: str | None = None
    plain: bool = True
    """A file, directory or symlink: the only kinds Git writes (anything else comes from a crafted tarball)."""


@dataclass(frozen=True)
class Escape:
    """`path` leads outside the tree, through the symlink `link` whose target is `target` (as written)."""

    path: str
    link: str
    target: str


def read_entries(tarball: Path) -> list[Entry]:
    """The members of an uncompressed tar (names and symlink targets only: no file content is read)."""
    entries = []
    with tarfile.open(tarball, mode="r:") as tar:
        for member in tar:
            entries.append(Entry(
                path=member.name,
                link_target=member.linkname if member.issym() else None,
                plain=member.isfile() or member.isdir() or member.issym(),
            ))
    return entries


def unsafe_reason(entries: Iterable[Entry], build_paths: Mapping[str, str]) -> str | None:
    """What makes the tree unsafe to build, as a message naming the path and the symlink's target; None if safe.

    `build_paths` maps a spec field to the path in the tree it names (`spec.build.context` → `app`); they are
    checked first, so the message names the field when the spec itself points out of the tree."""
    listed = list(entries)
    for entry in listed:
        if not entry.plain or _climbs(entry.path):
            return (f"the tree has a member {entry.path!r} that is no plain file, directory or symlink inside it: "
                    "Git never writes such an archive; check the repository")
    links = {_normal(e.path): e.link_target for e in listed if e.link_target is not None}
    for field, path in build_paths.items():
        escape = find_escape(path, links)
        if escape is not None:
            return (f"{field} (the repository's {path!r}) leads outside the repository through the symlink "
                    f"{escape.link!r} → {escape.target!r}: make it a directory or file inside the repository, "
                    f"or point {field} at one")
    escapes = [escape for link in sorted(links) if (escape := find_escape(link, links)) is not None]
    if not escapes:
        return None
    named = ", ".join(f"{e.path!r} → {links[e.path]!r}" + ("" if e.link == e.path else f" (through {e.link!r} → {e.target!r})")
                      for e in escapes[:MAX_NAMED])
    more = f" and {len(escapes) - MAX_NAMED} more" if len(escapes) > MAX_NAMED else ""
    return (f"{'the symlink' if len(escapes) == 1 else 'the symlinks'} {named}{more} "
            f"{'leads' if len(escapes) == 1 else 'lead'} outside the repository: the build would read files of the "
            "host; remove them or point them at paths inside the repository")


def find_escape(path: str, links: Mapping[str, str]) -> Escape | None:
    """How `path` (relative to the tree's root) leads outside the tree, following `links`; None if it stays in.

    A path that follows more than MAX_LINKS symlinks counts as leading out: it cannot be checked, and the
    kernel would refuse it anyway."""
    resolved: list[str] = []  # components of real directories, from the root
    # Each component still to walk, with the symlink whose target it came from (None: from `path` itself).
    pending: list[tuple[str, tuple[str, str] | None]] = [(part, None) for part in _parts(path)]
    followed = 0
    while pending:
        part, origin = pending.pop(0)
        if part == "..":
            if not resolved:
                culprit = origin or (path, path)
                return Escape(path=path, link=culprit[0], target=culprit[1])
            resolved.pop()
            continue
        here = "/".join([*resolved, part])
        target = links.get(here)
        if target is None:
            resolved.append(part)
            continue
        followed += 1
        if target.startswith("/") or followed > MAX_LINKS:
            return Escape(path=path, link=here, target=target)
        # A relative target starts from the link's own directory, which `resolved` is.
        pending = [(step, (here, target)) for step in _parts(target)] + pending
    return None


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _normal(path: str) -> str:
    return "/".join(_parts(path))


def _climbs(path: str) -> bool:
    return path.startswith("/") or ".." in path.split("/")
