"""The build script (DESIGN §3.3): build the image on the host from exactly the context tarball the source
step produced, streamed on stdin and checked against its sha256 there; skipped when the host has the image. A tree
with a symlink, build context or Dockerfile that leads outside it is refused (UnsafeSource) before docker sees it.

Also the cheap "is the image there?" check, so a controller can skip the upload. `parse_build` and
`parse_image_presence` (commands.results) read the JSON lines.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from deploymind.commands import docker, hostpaths, preflight, shell
from deploymind.commands.shell import Var

# How many of docker build's last output lines a failed build returns.
LOG_TAIL_LINES = 50

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class BuildParams:
    """What to build where. `dockerfile` is relative to `context` (as in Compose), `context` to the tarball's root."""

    uid: str
    revision: str
    image: str
    tree_digest: str
    host_dir: str | None
    """None: the host decides (hostpaths.RESOLVE_HOST_DIR)."""
    dockerfile: str = "Dockerfile"
    context: str = "."
    min_free_disk_mb: int = 500

    @property
    def uid8(self) -> str:
        return self.uid[:8]


def build_script(params: BuildParams) -> str:
    """The script to run with the context tarball on stdin; prints one JSON line (results.BuildResult)."""
    uid8 = hostpaths.check_name("uid", params.uid8)
    revision = hostpaths.check_name("revision", params.revision)
    if not _SHA256.match(params.tree_digest):
        raise ValueError(f"tree digest {params.tree_digest!r} is not a sha256 hex digest")
    values: dict[str, str | int | float] = {
        "revision": revision,
        "image": params.image,
        "digest": params.tree_digest,
        "dockerfile": _relative("dockerfile", params.dockerfile),
        "context_subdir": _relative("context", params.context),
    }
    labels = {docker.LABEL_UID: params.uid, docker.LABEL_REVISION: revision, docker.LABEL_TREE_DIGEST: params.tree_digest}
    build = docker.build(tag=params.image, dockerfile=Var("dockerfile_path"), context=Var("context_dir"), labels=labels)
    header = (
        "# Parameters of this build (generated).\n"
        + shell.assignments(values)
        + hostpaths.header(params.host_dir, {"builds_dir": hostpaths.builds_dir("", uid8)})
        + shell.assignments({"min_free_mb": params.min_free_disk_mb, "log_tail": LOG_TAIL_LINES})
        + preflight.header(preflight.BUILD)
        + shell.function("dm_image_id", [docker.image_id(params.image)], "id of the image to build")
        + shell.function("dm_build", [build], "uses $dockerfile_path and $context_dir")
    )
    return shell.bash(header + shell.body("lib") + shell.body("build"))


def image_present_script(image: str) -> str:
    """A script printing whether the host has `image` (results.ImagePresence); no stdin."""
    header = (
        shell.assignments({"image": image})
        + preflight.header(preflight.IMAGE_PRESENT)
        + shell.function("dm_image_id", [docker.image_id(image)], "id of the image")
    )
    return shell.bash(header + shell.body("lib") + shell.body("image_present"))


def _relative(kind: str, path: str) -> str:
    """A path inside the tarball: relative, normalized, never climbing out with `..`."""
    normal = posixpath.normpath(path or ".")
    if normal.startswith("/") or normal == ".." or normal.startswith("../") or "\n" in normal:
        raise ValueError(f"build {kind} {path!r} must be a relative path inside the repository")
    return normal
