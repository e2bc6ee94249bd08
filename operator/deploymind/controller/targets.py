"""From a spec to inputs a rollout needs: the host it may reach (tenancy checked, EC2 instance looked up), Secret
values (env, git token, SSH key) and a transport to that host."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from deploymind.api import reasons
from deploymind.api.spec import AddressType, DeploymentSpec, SecretKeyRef, Transport
from deploymind.api.status import TargetStatus
from deploymind.aws import ec2, ssm_info
from deploymind.aws.errors import AwsError
from deploymind.controller import tenancy
from deploymind.controller.kube import Kube
from deploymind.settings import Settings
from deploymind.steps.errors import Stalled, StepError, Waiting
from deploymind.transport.base import Transport as HostTransport
from deploymind.transport.local import LocalTransport
from deploymind.transport.ssh import SSHTransport
from deploymind.transport.ssm import SSMTransport


@dataclass(frozen=True)
class Host:
    """The target as resolved for this reconcile: what the transport reaches, and what status shows."""

    address: str
    """ssh: the address dialled (from the spec, or EC2's); ssm: the instance's private address; local: `local`."""
    instance_id: str | None = None
    region: str | None = None
    """The instance's region (ssm and EC2 lookups); None for hosts given by address."""


@dataclass(frozen=True)
class Inputs:
    """Secret material: held in memory only for the reconcile that needs it."""

    env: dict[str, str]
    token: str | None
    ssh_key: str | None
    known_hosts: str | None
    host: Host


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


async def resolve_inputs(kube: Kube, namespace: str, spec: DeploymentSpec, settings: Settings) -> Inputs:
    # The host first: a target that is not allowed is reported as such even while a Secret is still missing.
    host = await resolve_host_inputs(kube, namespace, spec, settings)
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
    return Inputs(env=env, token=token, ssh_key=host.ssh_key, known_hosts=host.known_hosts, host=host.host)


async def resolve_host_inputs(kube: Kube, namespace: str, spec: DeploymentSpec, settings: Settings) -> Inputs:
    """Only what reaching the host needs (a cleanup on delete must not wait for an env Secret deleted with it)."""
    host = await resolve_host(namespace, spec, settings)
    key = known = None
    if spec.target.ssh:
        key = await _secret(kube, namespace, spec.target.ssh.key_secret_ref, "spec.target.ssh.keySecretRef")
        known = await _secret(kube, namespace, spec.target.ssh.known_hosts_secret_ref,
                              "spec.target.ssh.knownHostsSecretRef")
    return Inputs(env={}, token=None, ssh_key=key, known_hosts=known, host=host)


async def resolve_host(namespace: str, spec: DeploymentSpec, settings: Settings) -> Host:
    """Where the target is, once tenancy allows it; nothing here contacts the host. An EC2 instance is looked up
    (its tag decides tenancy), must be running, and for ssm must be Online in Systems Manager."""
    target = spec.target
    check_allowed(spec, settings)
    if target.transport == Transport.LOCAL:
        return Host(address="local")
    if target.transport == Transport.SSH and target.ssh and target.ssh.host:
        refusal = tenancy.ssh_host_refusal(namespace, target.ssh.host, target.ssh.port, settings.target_policy)
        if refusal:
            raise Stalled(reasons.TARGET_NOT_ALLOWED, refusal)
        return Host(address=target.ssh.host, instance_id=target.instance_id)
    assert target.instance_id is not None, "the model requires instanceId for ssm, and ssh.host or instanceId for ssh"
    info = await _allowed_instance(namespace, target.instance_id, target.region or settings.aws_region, settings)
    instance_id = info.instance_id
    if target.transport == Transport.SSM:
        await _check_managed(info)
        return Host(address=info.private_address or instance_id, instance_id=instance_id, region=info.region)
    assert target.ssh is not None
    wanted = target.ssh.address_type
    address = info.private_address if wanted == AddressType.PRIVATE else info.public_address
    if not address:
        raise Waiting(reasons.TARGET_UNREACHABLE,
                      f"instance {instance_id} has no {wanted} address; set spec.target.ssh.addressType to "
                      f"{'public' if wanted == AddressType.PRIVATE else 'private'} or give the instance one")
    return Host(address=address, instance_id=instance_id, region=info.region)


async def _allowed_instance(namespace: str, instance_id: str, region: str | None, settings: Settings) -> ec2.InstanceInfo:
    """The instance, allowed for `namespace` and running. The cache may only say yes: a refusal or a wait is decided
    on a fresh lookup, so an administrator who has just tagged or started the instance and asks for a retry is not
    answered from a stale one."""
    hit = ec2.peek(instance_id, region)
    if hit is not None and hit.running and _instance_refusal(namespace, hit, settings) is None:
        return hit
    try:
        info = await ec2.describe_instance(instance_id, region, cached=False)
    except AwsError as e:
        raise _step_error(e) from None
    refusal = _instance_refusal(namespace, info, settings)
    if refusal:
        raise Stalled(reasons.TARGET_NOT_ALLOWED, refusal)
    if not info.running:
        raise _not_running(info)
    return info


def _not_running(info: ec2.InstanceInfo) -> Waiting:
    return Waiting(reasons.INSTANCE_NOT_RUNNING,
                   f"instance {info.instance_id} ({info.region}) is {info.state}; the rollout goes on once it is "
                   "running (looked up again with backoff)")


def _instance_refusal(namespace: str, info: ec2.InstanceInfo, settings: Settings) -> str | None:
    return tenancy.instance_refusal(namespace, info.instance_id, info.tags, settings.target_policy)


async def _check_managed(info: ec2.InstanceInfo) -> None:
    if ssm_info.recently_ran(info.instance_id, info.region):
        # A command ran there seconds ago: as good a sign of Online as the agent's last ping, and one call fewer.
        return
    try:
        ping = await ssm_info.ping_status(info.instance_id, info.region)
    except AwsError as e:
        raise _step_error(e) from None
    if ping == ssm_info.ONLINE:
        return
    # `info` may be a cached lookup from before the instance stopped (stopped ones are not Online either), and
    # "stopped" is the more useful answer.
    try:
        fresh = await ec2.describe_instance(info.instance_id, info.region, cached=False)
    except AwsError as e:
        raise _step_error(e) from None
    if not fresh.running:
        raise _not_running(fresh)
    state = f"is {ping} in Systems Manager" if ping else "is not registered with Systems Manager"
    raise Waiting(reasons.INSTANCE_NOT_MANAGED,
                  f"instance {info.instance_id} ({info.region}) {state}: check that the SSM agent runs on it and that "
                  "its instance profile allows Systems Manager (AmazonSSMManagedInstanceCore); retried with backoff")


def _step_error(e: AwsError) -> StepError:
    if e.reason == reasons.INSTANCE_NOT_FOUND:
        return Stalled(e.reason, e.message)
    if e.reason == reasons.AWS_ACCESS_DENIED:
        return Stalled(e.reason, f"{e.message} (docs/iam.md)")
    return Waiting(e.reason, e.message)


def host_key(spec: DeploymentSpec, settings: Settings) -> str:
    """The host's identity across Deployments: Leases and port claims are per host key. An instance is one host
    whether it is reached through SSM or over SSH at its address."""
    target = spec.target
    if target.transport == Transport.LOCAL:
        return f"local:{settings.local_docker_host or 'default'}"
    if target.transport == Transport.SSH and target.ssh and target.ssh.host:
        return f"ssh:{target.ssh.host}:{target.ssh.port}"
    return f"ec2:{target.instance_id}"


def target_status(host: Host, container: str, health: str | None) -> TargetStatus:
    """Where the app runs, for status (and the Target printer column)."""
    return TargetStatus(instance_id=host.instance_id, address=host.address, container=container, health=health)


def check_allowed(spec: DeploymentSpec, settings: Settings) -> None:
    if spec.target.transport == Transport.LOCAL and not settings.allow_local_transport:
        raise Stalled(reasons.TARGET_NOT_ALLOWED, "spec.target.transport local runs containers on the operator's own "
                                                  "host and is refused unless the operator runs with "
                                                  "--allow-local-transport (the sandbox does); use ssm or ssh")


def transport_signature(spec: DeploymentSpec, inputs: Inputs, settings: Settings) -> str:
    """Changes whenever the transport must be rebuilt (new host or address, new key, new pinned host key)."""
    parts = [host_key(spec, settings), inputs.host.address, spec.target.ssh.user if spec.target.ssh else "",
             inputs.ssh_key or "", inputs.known_hosts or ""]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def open_transport(spec: DeploymentSpec, inputs: Inputs, settings: Settings) -> HostTransport:
    """A transport to `inputs.host`, which resolve_host has allowed."""
    target = spec.target
    check_allowed(spec, settings)
    if target.transport == Transport.LOCAL:
        env = {"DOCKER_HOST": settings.local_docker_host} if settings.local_docker_host else {}
        return LocalTransport(env)
    if target.transport == Transport.SSM:
        assert inputs.host.instance_id is not None, "resolve_host looked the instance up"
        return SSMTransport(inputs.host.instance_id, inputs.host.region, settings=settings)
    assert target.ssh is not None and inputs.ssh_key and inputs.known_hosts
    return SSHTransport(inputs.host.address, user=target.ssh.user, port=target.ssh.port,
                        private_key=inputs.ssh_key, known_hosts=inputs.known_hosts)
