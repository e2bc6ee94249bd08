"""The Kubernetes API of the test world: the project's emulator on 127.0.0.1 with the CRDs from crds/ installed."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploymind.sandbox.kube.apiserver import ApiServer
from deploymind.sandbox.kube.emulator import RealisticEmulator

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"


def project_crds(directory: Path = CRDS_DIR) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in crds/*.yaml (none while the CRD is not generated yet)."""
    found: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                found.append(document)
    return found


@dataclass
class Kube:
    """A running emulator (`.api`) and a kubeconfig that points at it."""

    api: ApiServer
    kubeconfig: Path

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def emulator(self) -> RealisticEmulator:
        return self.api.emulator

    @classmethod
    def start(cls, directory: Path) -> Kube:
        api = ApiServer(crds=project_crds()).start()
        return cls(api=api, kubeconfig=api.write_kubeconfig(directory / "kubeconfig"))

    def kubeconfig_for(self, user: str, groups: Iterable[str] = (), *, namespace: str = "default") -> Path:
        """A kubeconfig next to the admin's whose fresh bearer token authenticates as `user` (in `groups`, plus
        `system:authenticated` and, for `system:serviceaccount:<ns>:<name>`, the ServiceAccount groups); what it
        may do is up to the RBAC objects in the emulator."""
        token = secrets.token_urlsafe(24)
        self.emulator.add_token(token, user, tuple(groups))
        path = self.kubeconfig.parent / f"kubeconfig-{re.sub(r'[^A-Za-z0-9_.-]+', '-', user)}-{secrets.token_hex(4)}"
        return self.api.write_kubeconfig(path, namespace, token=token)

    def stop(self) -> None:
        self.api.stop()
