"""The controller's edge to the Kubernetes API: status, Secrets, Events, Leases. Blocking client calls run in threads."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
from collections.abc import Callable
from typing import Any

import kubernetes.client as k8s
import urllib3
from kubernetes.client.exceptions import ApiException

from deploymind.api import GROUP, PLURAL, VERSION


class Conflict(Exception):
    """The object changed since it was read (HTTP 409)."""


class NotFound(Exception):
    """The object does not exist (HTTP 404)."""


def is_transient(error: BaseException) -> bool:
    """An API call that may work when tried again: the server failed or was overloaded (5xx, 429), or the request
    never got an answer (connection refused or reset, timeout)."""
    if isinstance(error, ApiException):
        return error.status is not None and (error.status >= 500 or error.status == 429)
    return isinstance(error, urllib3.exceptions.HTTPError | OSError | TimeoutError)


def load_api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """In a pod: the service account; elsewhere: the kubeconfig (KUBECONFIG or the given path)."""
    import kubernetes.config as kconfig

    try:
        kconfig.load_incluster_config()
        return k8s.ApiClient()
    except kconfig.ConfigException:
        config = k8s.Configuration()
        kconfig.load_kube_config(config_file=kubeconfig, client_configuration=config)
        return k8s.ApiClient(configuration=config)


class Kube:
    """Async facade over the kubernetes client; every call runs off the event loop."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.configuration = api_client.configuration
        """Host, credentials and TLS of these calls, for the clients that stream (controller.secretwatch)."""
        self._custom = k8s.CustomObjectsApi(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._coordination = k8s.CoordinationV1Api(api_client)
        self._authentication = k8s.AuthenticationV1Api(api_client)
        self._authorization = k8s.AuthorizationV1Api(api_client)
        self._on_deployment: Callable[[dict[str, Any]], None] | None = None
        self.on_secret_read: Callable[[str, str, dict[str, str] | None], None] | None = None
        """Told (namespace, name, its data as the API server returned it, or None when it does not exist) of every
        Secret read: the Secret watches compare their first look with it (controller.secretwatch)."""

    def observing(self, on_deployment: Callable[[dict[str, Any]], None]) -> Kube:
        """This client (the same connections), also handing `on_deployment` every Deployment the API server returns
        to it: an actor learns what its own status writes left without reading the object again."""
        clone = copy.copy(self)
        clone._on_deployment = on_deployment
        return clone

    def _returned(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self._on_deployment is not None:
            self._on_deployment(obj)
        return obj

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as e:
            if e.status == 409:
                raise Conflict(str(e.reason)) from e
            if e.status == 404:
                raise NotFound(str(e.reason)) from e
            raise

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = await self._call(self._custom.get_namespaced_custom_object,
                                               GROUP, VERSION, namespace, PLURAL, name)
        return self._returned(obj)

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any], resource_version: str) -> dict[str, Any]:
        """Merge-patch the status subresource with a resourceVersion precondition (409 → Conflict)."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}
        obj: dict[str, Any] = await self._call(self._custom.patch_namespaced_custom_object_status,
                                               GROUP, VERSION, namespace, PLURAL, name, body)
        return self._returned(obj)

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes | None:
        """The value as stored (bytes: only the caller knows whether it must be text), or None when the Secret or
        the key is missing."""
        data = await self.read_secret_data(namespace, name)
        if data is None or key not in data:
            return None
        return data[key]

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """Every key of the Secret, decoded; None when it does not exist."""
        try:
            secret = await self._call(self._core.read_namespaced_secret, name, namespace)
        except NotFound:
            if self.on_secret_read is not None:
                self.on_secret_read(namespace, name, None)
            return None
        if self.on_secret_read is not None:
            self.on_secret_read(namespace, name, secret.data or {})
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    async def create_secret(self, namespace: str, name: str, data: dict[str, bytes], labels: dict[str, str]) -> None:
        """Create an Opaque Secret (409 → Conflict when it exists already)."""
        body = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=labels), type="Opaque",
                            data={k: base64.b64encode(v).decode() for k, v in data.items()})
        await self._call(self._core.create_namespaced_secret, namespace, body)

    async def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        stamp = datetime.datetime.now(datetime.UTC)
        event = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
            involved_object=k8s.V1ObjectReference(
                api_version=obj.get("apiVersion"), kind=obj.get("kind"), name=meta["name"],
                namespace=meta["namespace"], uid=meta["uid"], resource_version=meta.get("resourceVersion")),
            type=type_, reason=reason, message=message[:1024],
            first_timestamp=stamp, last_timestamp=stamp, count=1,
            source=k8s.V1EventSource(component="deploymind"),
            reporting_component="deploymind.io/operator", reporting_instance="deploymind",
        )
        await self._call(self._core.create_namespaced_event, meta["namespace"], event)

    # Lease calls take a request timeout: a renewal that hangs past the Lease's duration is worth nothing.
    async def get_lease(self, namespace: str, name: str, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        return await self._call(self._coordination.read_namespaced_lease, name, namespace, _request_timeout=timeout)

    async def create_lease(self, namespace: str, body: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        return await self._call(self._coordination.create_namespaced_lease, namespace, body,
                                _request_timeout=timeout)

    async def replace_lease(self, namespace: str, name: str, body: Any,
                            timeout: float | None = None) -> Any:  # noqa: ASYNC109
        return await self._call(self._coordination.replace_namespaced_lease, name, namespace, body,
                                _request_timeout=timeout)

    async def delete_lease(self, namespace: str, name: str) -> None:
        await self._call(self._coordination.delete_namespaced_lease, name, namespace)

    # Reviews answer who holds a caller's token and what that user may do (history.authz); the body of a
    # TokenReview carries the token, so neither it nor the answer is ever logged here.
    async def review_token(self, token: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """The status of a TokenReview of `token`: authenticated, user {username, uid, groups, extra}, error."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        review = await self._call(self._authentication.create_token_review, body, _request_timeout=timeout)
        return dict(self._core.api_client.sanitize_for_serialization(review.status) or {})

    async def review_access(self, spec: dict[str, Any], timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """The status of a SubjectAccessReview of `spec` (user, groups, resource or non-resource attributes):
        allowed, denied, reason."""
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        review = await self._call(self._authorization.create_subject_access_review, body, _request_timeout=timeout)
        return dict(self._core.api_client.sanitize_for_serialization(review.status) or {})
