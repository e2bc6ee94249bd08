"""Revision identity: `<commit[:12]>-<config[:8]>`, where config hashes exactly what changes what runs.

Editing healthCheck, rollback, revisionHistoryLimit or suspend never changes a revision id, so it never redeploys.
A rotated Secret value does change it (the env values are in the hash), so rotation redeploys.

Revision ids are visible to whoever reads the Deployment, so the env values enter the hash only through an HMAC under
the operator's revision key (`controller.revisionkey`): a reader without the key cannot test guesses of a short
Secret value against the id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from deploymind.api.spec import DEFAULT_STOP_GRACE_SECONDS, DeploymentSpec


def config_hash(spec: DeploymentSpec, env: Mapping[str, str], key: bytes) -> str:
    """sha256 over the build settings, the keyed HMAC of the resolved env, the port, the limits, the prebuilt image
    and, when not default, the init and stop grace."""
    if not key:
        raise ValueError("config_hash needs the revision key (controller.revisionkey.load_or_create)")
    build = spec.build.wire() if spec.build else None
    resources = spec.container.resources.wire() if spec.container.resources else None
    doc = {
        "build": build,
        "env": hmac.new(key, json.dumps(sorted(env.items())).encode(), hashlib.sha256).hexdigest(),
        "port": spec.container.port,
        "resources": resources,
        "image": spec.image,
    }
    # How the container starts (init, stop grace) changes what runs, so it is in the hash; but only when it is not
    # the default: these fields came after the others, and a hash input that changed for every object would change
    # every revision id and redeploy every app on an operator upgrade. A default value hashes as it did before.
    container = spec.container
    if not container.init:
        doc["init"] = False
    if container.stop_grace_period_seconds != DEFAULT_STOP_GRACE_SECONDS:
        doc["stopGracePeriodSeconds"] = container.stop_grace_period_seconds
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def revision_id(base: str, config: str) -> str:
    """`base` is the commit SHA (source) or the image digest/reference hash (prebuilt image)."""
    return f"{base[:12]}-{config[:8]}"


def image_base(image: str) -> str:
    """The identity of a prebuilt image: its digest when pinned, else a hash of the reference."""
    if "@sha256:" in image:
        return image.split("@sha256:", 1)[1]
    return hashlib.sha256(image.encode()).hexdigest()


def built_image(uid: str, revision: str) -> str:
    """The tag an image built from source gets on the host."""
    return f"deploymind/{uid[:8]}:{revision}"
