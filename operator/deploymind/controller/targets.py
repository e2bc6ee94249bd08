"""From a spec to inputs a rollout needs: Secret values (env, git token, SSH key) and a transport to the allowed host."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec, SecretKeyRef, Transport
from deploymind.api.status import TargetStatus
from deploymind.controller.kube import Kube
from deploymind.settings import Settings
from deploymind.steps.errors import Stalled, Waiting
from deploymind.transport.base import Transport as HostTransport
from deploymind.transport.local import LocalTransport
from deploymind.transport.ssh import SSHTransport


@dataclass(frozen=True)
class Inputs:
    """Secret material: held in memory only for the reconcile that needs it."""

    env: dict[str, str]
    token: str | None
    ssh_key: str | None
    known_hosts: str | None


async def _secret(kube: Kube, namespace: str, ref: SecretKeyRef, what: str) -> str:
    value = await kube.read_secret_key(namespace, ref.name, ref.key)
    if value is None:
        # Waiting, not Stalled: the Secret is often applied just after the Deployment; its creation wakes us.
        raise Waiting(reasons.SECRET_NOT_FOUND,
                      f"{what}: Secret {namespace}/{ref.name} has no key {ref.key!r}; create it "
                      f"(kubectl create secret generic {ref.name} --from-literal={ref.key}=…)")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        # Never decoded with replacement characters: the app (or the host) would get a value nobody stored.
        raise Stalled(reasons.SECRET_NOT_TEXT,
                      f"{what}: Secret {namespace}/{ref.name} key {ref.key!r} is not UTF-8 text (byte {e.start} "
                      f"of {len(value)}); store a text form of it (base64, say) and decode it in the app") from None


async def resolve_inputs(kube: Kube, namespace: str, spec: DeploymentSpec) -> Inputs:
    env: dict[str, str] = {}
    for var in spec.container.env:
        if var.value_from is not None:
            value = await _secret(kube, namespace, var.value_from.secret_key_ref, f"spec.container.env {var.name}")
        else:
            value = var.value or ""
        if "\n" in value or "\r" in value:
            raise Stalled(reasons.INVALID_SPEC, f"spec.container.env {var.name}: the value has a line break, which an "
                                                "env file cannot carry; store it without line breaks (e.g. base64)")
        env[var.name] = value
    token = None
    if spec.source and spec.source.credentials_secret_ref:
        token = (await _secret(kube, namespace, spec.source.credentials_secret_ref, "spec.source.credentialsSecretRef")).strip()
    host = await resolve_host_inputs(kube, namespace, spec)
    return Inputs(env=env, token=token, ssh_key=host.ssh_key, known_hosts=host.known_hosts)


async def resolve_host_inputs(kube: Kube, namespace: str, spec: DeploymentSpec) -> Inputs:
    """Only what reaching the host needs (a cleanup on delete must not wait for an env Secret deleted with it)."""
    key = known = None
    if spec.target.ssh:
        key = await _secret(kube, namespace, spec.target.ssh.key_secret_ref, "spec.target.ssh.keySecretRef")
        known = await _secret(kube, namespace, spec.target.ssh.known_hosts_secret_ref,
                              "spec.target.ssh.knownHostsSecretRef")
    return Inputs(env={}, token=None, ssh_key=key, known_hosts=known)


def host_key(spec: DeploymentSpec, settings: Settings) -> str:
    """The host's identity across Deployments: Leases and port claims are per host key."""
    target = spec.target
    if target.transport == Transport.LOCAL:
        return f"local:{settings.local_docker_host or 'default'}"
    if target.transport == Transport.SSH and target.ssh and target.ssh.host:
        return f"ssh:{target.ssh.host}:{target.ssh.port}"
    return f"{target.transport}:{target.instance_id}"


def target_status(spec: DeploymentSpec, settings: Settings, container: str, health: str | None) -> TargetStatus:
    """Where the app runs, for status (and the Target printer column)."""
    target = spec.target
    if target.transport == Transport.LOCAL:
        address = "local"
    elif target.ssh and target.ssh.host:
        address = target.ssh.host
    else:
        address = target.instance_id or ""
    return TargetStatus(instance_id=target.instance_id, address=address, container=container, health=health)


def check_allowed(spec: DeploymentSpec, settings: Settings) -> None:
    target = spec.target
    if target.transport == Transport.LOCAL and not settings.allow_local_transport:
        raise Stalled(reasons.TARGET_NOT_ALLOWED, "spec.target.transport local runs containers on the operator's own "
                                                  "host and is refused unless the operator runs with "
                                                  "--allow-local-transport (the sandbox does); use ssm or ssh")
    if target.transport == Transport.SSM:
        raise Stalled(reasons.TARGET_NOT_ALLOWED, "spec.target.transport ssm is not available in this operator "
                                                  "version yet; use ssh (with the instance's address) for now")
    if target.transport == Transport.SSH and not (target.ssh and target.ssh.host):
        raise Stalled(reasons.TARGET_NOT_ALLOWED, "spec.target.ssh.host is required in this operator version "
                                                  "(looking the address of instanceId up in EC2 is not available yet)")


def transport_signature(spec: DeploymentSpec, inputs: Inputs, settings: Settings) -> str:
    """Changes whenever the transport must be rebuilt (new host, new key, new pinned host key)."""
    parts = [host_key(spec, settings), spec.target.ssh.user if spec.target.ssh else "",
             inputs.ssh_key or "", inputs.known_hosts or ""]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def open_transport(spec: DeploymentSpec, inputs: Inputs, settings: Settings) -> HostTransport:
    check_allowed(spec, settings)
    target = spec.target
    if target.transport == Transport.LOCAL:
        env = {"DOCKER_HOST": settings.local_docker_host} if settings.local_docker_host else {}
        return LocalTransport(env)
    assert target.ssh is not None and target.ssh.host is not None and inputs.ssh_key and inputs.known_hosts
    return SSHTransport(target.ssh.host, user=target.ssh.user, port=target.ssh.port,
                        private_key=inputs.ssh_key, known_hosts=inputs.known_hosts)
