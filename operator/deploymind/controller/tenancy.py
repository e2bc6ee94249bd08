"""Who may deploy where, decided before any contact with a host (docs/tenancy.md). Pure: data in, a refusal out.

- An EC2 instance (transport ssm, or ssh with `instanceId`) consents through its own tag `deploymind.io/namespaces`
  (comma-separated namespaces, `*` for all); with a target policy, a rule covering the namespace must also allow
  instances, with the tags it requires.
- An SSH host given by address is allowed when a rule of the target policy covering the namespace lists it. Without
  a policy file every SSH host is allowed (the operator warns at startup): the behaviour before tenancy existed.

Each function returns None (allowed) or the refusal, naming the tag or rule that refused; the caller reports it as
Stalled TargetNotAllowed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from deploymind.api.targetpolicy import HostPattern, TargetPolicy, TargetRule

NAMESPACES_TAG = "deploymind.io/namespaces"
ANY = "*"
NO_POLICY_WARNING = ("no target policy (--target-policy FILE, DEPLOYMIND_TARGET_POLICY): every namespace may deploy "
                     "to any SSH host it can name; EC2 instances are still allowed only by their "
                     f"{NAMESPACES_TAG} tag (docs/tenancy.md)")


def tagged_namespaces(tags: Mapping[str, str]) -> list[str] | None:
    """The namespaces an instance's tag lists; None when it has no such tag."""
    value = tags.get(NAMESPACES_TAG)
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def instance_refusal(namespace: str, instance_id: str, tags: Mapping[str, str],
                     policy: TargetPolicy | None) -> str | None:
    listed = tagged_namespaces(tags)
    fix = (f"an administrator allows it by adding {namespace} to the instance's tag {NAMESPACES_TAG} "
           f"(comma-separated namespaces, {ANY} for all)")
    if listed is None:
        return f"instance {instance_id} has no tag {NAMESPACES_TAG}, so no namespace may deploy to it; {fix}"
    if namespace not in listed and ANY not in listed:
        return (f"the tag {NAMESPACES_TAG}={tags[NAMESPACES_TAG]!r} of instance {instance_id} does not list "
                f"namespace {namespace}; {fix}")
    if policy is None:
        return None
    covering = _covering(policy, namespace)
    if not covering:
        return _uncovered(policy, namespace)
    with_instances = [(i, r) for i, r in covering if r.instances is not None]
    if not with_instances:
        labels = ", ".join(policy.label(i) for i, _ in covering)
        return (f"target policy {policy.source}: no rule for namespace {namespace} allows EC2 instances ({labels} "
                "only list sshHosts); an administrator adds `instances:` to one")
    shortfalls = []
    for index, rule in with_instances:
        missing = _missing_tags(rule, tags)
        if not missing:
            return None
        shortfalls.append(f"{policy.label(index)} requires {', '.join(missing)}")
    return (f"target policy {policy.source}: instance {instance_id} lacks the tags the rules for namespace "
            f"{namespace} require: {'; '.join(shortfalls)}; tag the instance or use another one")


def ssh_host_refusal(namespace: str, host: str, port: int, policy: TargetPolicy | None) -> str | None:
    if policy is None:
        return None
    covering = _covering(policy, namespace)
    if not covering:
        return _uncovered(policy, namespace)
    for _, rule in covering:
        if any(HostPattern.parse(p).matches(host, port) for p in rule.ssh_hosts):
            return None
    listed = "; ".join(f"{policy.label(i)}: sshHosts {r.ssh_hosts or 'none'}" for i, r in covering)
    return (f"target policy {policy.source}: no rule allows SSH host {host} port {port} for namespace {namespace} "
            f"({listed}); use an allowed host, or ask an administrator to allow this one")


def _covering(policy: TargetPolicy, namespace: str) -> list[tuple[int, TargetRule]]:
    return [(i, rule) for i, rule in enumerate(policy.rules)
            if any(fnmatch.fnmatchcase(namespace, pattern) for pattern in rule.namespaces)]


def _uncovered(policy: TargetPolicy, namespace: str) -> str:
    return (f"target policy {policy.source}: no rule covers namespace {namespace}, so it may deploy to no host; "
            "an administrator adds a rule for it")


def _missing_tags(rule: TargetRule, tags: Mapping[str, str]) -> list[str]:
    assert rule.instances is not None
    missing = []
    for key, wanted in rule.instances.require_tags.items():
        have = tags.get(key)
        if have is None or (wanted != ANY and have != wanted):
            missing.append(f"{key}={wanted}" + (f" (it has {key}={have})" if have is not None else ""))
    return missing
