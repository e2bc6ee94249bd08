"""Apply manifests to the sandbox's API server the way `kubectl apply` would for new objects: create, else merge-patch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubernetes import config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ConflictError


def apply_documents(kubeconfig: str, docs: Sequence[dict[str, Any]]) -> list[str]:
    """Create or update each document; return one `kind/name created|configured|error` line each."""
    client = dynamic.DynamicClient(config.new_client_from_config(config_file=kubeconfig))
    lines = []
    for doc in docs:
        kind, meta = doc.get("kind", "?"), doc.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        label = f"{kind.lower()}/{meta.get('name', '?')}"
        try:
            resource = client.resources.get(api_version=doc["apiVersion"], kind=kind)
            ns = namespace if resource.namespaced else None
            try:
                resource.create(body=doc, namespace=ns)
                lines.append(f"{label} created")
            except ConflictError:
                resource.patch(body=doc, name=meta["name"], namespace=ns,
                               content_type="application/merge-patch+json")
                lines.append(f"{label} configured")
        except ApiException as e:
            lines.append(f"{label} error: {e.status} {_message(e)}")
        except (KeyError, ValueError) as e:
            lines.append(f"{label} error: {e}")
    return lines


def _message(e: ApiException) -> str:
    import json

    try:
        return str(json.loads(e.body or "{}").get("message", e.reason))
    except (TypeError, ValueError):
        return str(e.reason)



