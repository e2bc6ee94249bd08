"""The revision key: the operator's HMAC key for the env part of revision ids, kept in a Secret.

Revision ids are in every Deployment's status; the key keeps Secret values out of reach of anyone who reads them.
It must outlive the operator's pod (a new key would change every revision id and redeploy every Deployment), so it
lives in the Secret `deploymind-revision-key` of the operator's namespace, made once by whichever replica starts first.
"""

from __future__ import annotations

import logging
import secrets

import urllib3
from kubernetes.client.exceptions import ApiException

from deploymind.controller.kube import Conflict, Kube

log = logging.getLogger(__name__)

SECRET_NAME = "deploymind-revision-key"
KEY_FIELD = "key"
KEY_BYTES = 32


class RevisionKeyError(Exception):
    """The key Secret could not be read or made; the message says what to grant or fix."""


async def load_or_create(kube: Kube, namespace: str) -> bytes:
    """The key from the Secret; made (random, 32 bytes) when the Secret does not exist yet."""
    where = f"Secret {namespace}/{SECRET_NAME}"
    try:
        key = await _read(kube, namespace, where)
        if key is not None:
            return key
        try:
            await kube.create_secret(namespace, SECRET_NAME, {KEY_FIELD: secrets.token_bytes(KEY_BYTES)},
                                     labels={"app.kubernetes.io/managed-by": "deploymind"})
            log.info("made the revision key %s", where)
        except Conflict:
            pass  # another replica made it first: use theirs
        key = await _read(kube, namespace, where)
    except ApiException as e:
        raise RevisionKeyError(
            f"cannot read or create the revision key {where} (HTTP {e.status} {e.reason}): the operator's "
            "ServiceAccount needs get and create on secrets in its own namespace (--lease-namespace)") from None
    except urllib3.exceptions.HTTPError as e:
        raise RevisionKeyError(f"cannot reach the Kubernetes API to read the revision key {where}: {e}") from None
    if key is None:
        raise RevisionKeyError(f"the revision key {where} vanished while it was being made; start the operator again")
    return key


async def _read(kube: Kube, namespace: str, where: str) -> bytes | None:
    data = await kube.read_secret_data(namespace, SECRET_NAME)
    if data is None:
        return None
    key = data.get(KEY_FIELD, b"")
    if len(key) < 16:
        raise RevisionKeyError(f"{where} has no usable key in data.{KEY_FIELD} (at least 16 bytes); delete the Secret "
                               "to have a new one made (every revision id changes once, which redeploys every "
                               "Deployment)")
    return key
