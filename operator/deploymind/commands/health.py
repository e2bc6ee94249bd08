"""The health tick's script (DESIGN §3.5) and the restart used after the bake: one round trip each.

The health script probes the app's health endpoint, inspects the stable container (never its env: that holds
secret values) and samples its CPU and memory. `parse_health` and `parse_restart` (commands.results) read the
JSON lines.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from deploymind.commands import docker, hostpaths, preflight, shell

# `docker stats --no-stream` takes about 2 s; an engine that hangs must not keep a sampler for ever.
STATS_TIMEOUT_S = 20


@dataclass(frozen=True)
class HealthParams:
    """Which container and endpoint to check; `image` is what the container should run."""

    uid8: str
    image: str
    port: int
    health_path: str = "/health"
    probe_timeout_s: int = 5
    background_stats: bool = False
    """CPU/memory are sampled in the background under the host directory for the next tick (`docker stats` takes
    about 2 s, longer than a 1-second probe period) and the tick reports the previous sample; else inline."""
    host_dir: str | None = None
    """For background stats; None: the host decides (hostpaths.RESOLVE_HOST_DIR)."""


def health_script(params: HealthParams) -> str:
    """A script printing one JSON line (results.HealthResult); no stdin."""
    uid8 = hostpaths.check_name("uid", params.uid8)
    if not params.health_path.startswith("/"):
        raise ValueError(f"health path {params.health_path!r} must start with '/'")
    stable = docker.stable_name(uid8)
    header = shell.assignments(
        {
            "image": params.image,
            "port": params.port,
            "health_path": params.health_path,
            "probe_timeout": params.probe_timeout_s,
        }
    )
    if params.background_stats:
        header += hostpaths.header(params.host_dir, {"stats_file": posixpath.join(hostpaths.object_dir("", uid8),
                                                                                  "stats.json")})
    else:
        header += shell.assignments({"stats_file": ""})
    header += preflight.header(preflight.HEALTH)
    header += shell.function("dm_inspect", [docker.inspect(stable)], "the stable container as JSON")
    header += shell.function("dm_image_id", [docker.image_id(params.image)], "id of the expected image")
    header += shell.function("dm_stats", [["timeout", str(STATS_TIMEOUT_S), *docker.stats(stable)]],
                             "one CPU/memory sample as JSON, bounded")
    return shell.bash(header + shell.body("lib") + shell.body("health"))


def restart_script(uid8: str, grace_s: int = docker.STOP_TIMEOUT_S) -> str:
    """A script restarting `dm-<uid8>` (the app gets `grace_s` to exit) and printing one JSON line
    (results.RestartResult); no stdin."""
    stable = docker.stable_name(hostpaths.check_name("uid", uid8))
    header = shell.assignments({"stable": stable}) + preflight.header(preflight.RESTART)
    header += shell.function("dm_state", [docker.state(stable)], "fails when the container is absent")
    header += shell.function("dm_restart", [docker.restart(stable, grace_s)], "restart the stable container")
    return shell.bash(header + shell.body("lib") + shell.body("restart"))
