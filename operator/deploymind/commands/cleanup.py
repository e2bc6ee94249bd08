"""The cleanup script for `deletionPolicy: Delete`: remove a Deployment's containers, images and host files.

Containers are found by the uid label (stable, candidate and a container left aside by an interrupted switch
alike); images by the `deploymind/<uid8>` repository, by tag, so an image another app shares is never forced
out. A prebuilt `spec.image` is left alone: other apps may use it. `parse_cleanup` (commands.results) reads
the JSON line.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploymind.commands import docker, hostpaths, preflight, shell
from deploymind.commands.shell import Var

LOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class CleanupParams:
    uid: str
    host_dir: str | None
    """None: the host decides (hostpaths.RESOLVE_HOST_DIR)."""
    lock_timeout_s: int = LOCK_TIMEOUT_S

    @property
    def uid8(self) -> str:
        return self.uid[:8]


def cleanup_script(params: CleanupParams) -> str:
    """A script printing one JSON line (results.CleanupResult); no stdin."""
    uid8 = hostpaths.check_name("uid", params.uid8)
    repository = docker.image_repository(uid8)
    header = hostpaths.header(params.host_dir, {"lock_file": hostpaths.lock_file(""),
                                                "object_dir": hostpaths.object_dir("", uid8)})
    header += shell.assignments({"lock_timeout": params.lock_timeout_s})
    header += preflight.header(preflight.CLEANUP)
    header += shell.function(
        "dm_containers", [docker.containers_labelled(docker.LABEL_UID, params.uid)], "ids of the app's containers"
    )
    header += shell.function("dm_remove", [docker.remove(Var("1"))], "$1 = container")
    header += shell.function("dm_image_tags", [docker.image_tags(repository)], "the app's images")
    header += shell.function("dm_remove_image", [docker.remove_image(Var("1"))], "$1 = image")
    return shell.bash(header + shell.body("lib") + shell.body("cleanup"))
