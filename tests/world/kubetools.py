"""kubectl and helm as callables bound to one Kubernetes API server through a private kubeconfig."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml


def write_kubeconfig(path: Path, server_url: str, namespace: str = "default") -> Path:
    """A kubeconfig for an unauthenticated API server at `server_url` (the emulator needs no credentials)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "world", "cluster": {"server": server_url}}],
        "users": [{"name": "world", "user": {}}],
        "contexts": [{"name": "world", "context": {"cluster": "world", "user": "world", "namespace": namespace}}],
        "current-context": "world",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Kubectl:
    """`kubectl(*args, input=None)` runs kubectl 1.35 against one kubeconfig and returns the CompletedProcess."""

    binary: Path
    kubeconfig: Path
    cache_dir: Path

    @property
    def env(self) -> dict[str, str]:
        # A private discovery cache: the world's ports are reused across sessions, its API is not.
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.cache_dir)}

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            input=input, capture_output=True, text=True, check=False, timeout=timeout, env=self.env,
        )


@dataclass(frozen=True)
class Helm:
    """`helm(*args, input=None)` runs helm 4.1 against one kubeconfig with private cache/config/data homes."""

    binary: Path
    kubeconfig: Path
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            input=input, capture_output=True, text=True, check=False, timeout=timeout, env=self.env,
        )
