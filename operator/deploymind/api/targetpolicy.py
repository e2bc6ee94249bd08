"""The operator's target policy: a YAML file, written by an administrator, that says which SSH hosts and which EC2
instances each namespace may deploy to (docs/tenancy.md). Read once at startup; a file that does not parse stops the
operator with the file and the field named. The decisions themselves are made in controller.tenancy."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, Field, ValidationError

from deploymind.api.base import ApiModel

_HOST_GLOB = re.compile(r"^[A-Za-z0-9.*?_:-]+$")
_PORT_GLOB = re.compile(r"^[0-9*?]+$")
_NAMESPACE_GLOB = re.compile(r"^[a-z0-9*?-]+$")
_TAG_KEY = re.compile(r"^[^\s][^\r\n]{0,127}$")


class TargetPolicyError(Exception):
    """The policy file cannot be read or does not parse; the message names the file and the field."""


@dataclass(frozen=True)
class HostPattern:
    """One entry of `sshHosts`: a host glob (`*.team-a.internal`, `10.0.1.?`) or a CIDR (`10.0.1.0/24`), with an
    optional port glob (`:22`, `:22*`); IPv6 in brackets (`[fd00::/8]:22`). A CIDR matches only hosts written as IP
    addresses: names are never resolved, so what is allowed does not depend on DNS answers."""

    text: str
    host: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    port: str | None
    """A glob over the port number; None: any port."""

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        raw = text.strip()
        host, port = raw, None
        if raw.startswith("["):
            end = raw.find("]")
            rest = raw[end + 1:] if end > 0 else ""
            if end < 0 or (rest and not rest.startswith(":")):
                raise ValueError(f"{text!r}: an IPv6 address goes in brackets, as [fd00::1] or [fd00::/8]:22")
            host, port = raw[1:end], (rest[1:] if rest else None)
        elif raw.count(":") == 1:
            host, port = raw.split(":")
        elif "/" in raw and ":" in raw.split("/", 1)[1]:
            host, _, port = raw.rpartition(":")
        if port is not None and not _PORT_GLOB.match(port):
            raise ValueError(f"{text!r}: the port must be a number or a glob of one (22, 22*, *)")
        network = None
        if "/" in host:
            try:
                network = ipaddress.ip_network(host, strict=True)
            except ValueError as e:
                raise ValueError(f"{text!r}: not a CIDR ({e})") from None
        elif not _HOST_GLOB.match(host):
            raise ValueError(f"{text!r}: a host pattern has letters, digits, '.', '-', '_' and the globs * and ?")
        return cls(text=raw, host=host.lower(), network=network, port=None if port in (None, "*") else port)

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and not fnmatch.fnmatchcase(str(port), self.port):
            return False
        if self.network is None:
            return fnmatch.fnmatchcase(host.lower(), self.host)
        try:
            return ipaddress.ip_address(host) in self.network
        except ValueError:
            return False


def _host_pattern(text: str) -> str:
    HostPattern.parse(text)
    return text


def _namespace_pattern(text: str) -> str:
    if not _NAMESPACE_GLOB.match(text):
        raise ValueError(f"{text!r}: a namespace name, or a glob of one with * and ? (team-a, team-*, *)")
    return text


def _tag_key(text: str) -> str:
    if not _TAG_KEY.match(text):
        raise ValueError(f"{text!r}: an EC2 tag key (1 to 128 characters, not starting with a space)")
    return text


NamespacePattern = Annotated[str, AfterValidator(_namespace_pattern)]
SshHostPattern = Annotated[str, AfterValidator(_host_pattern)]
TagKey = Annotated[str, AfterValidator(_tag_key)]


class InstanceRule(ApiModel):
    """EC2 instances this rule allows (transport ssm, or ssh with `instanceId`), besides the instance's own
    `deploymind.io/namespaces` tag, which must always list the namespace."""

    require_tags: dict[TagKey, str] = Field(default_factory=dict)
    """Tags the instance must also carry: key → value, `*` for any value."""


class TargetRule(ApiModel):
    """What the namespaces matching `namespaces` may deploy to."""

    name: str | None = Field(default=None, min_length=1, max_length=63)
    """Named in refusals (default `rules[N]`)."""
    namespaces: list[NamespacePattern] = Field(min_length=1)
    """Namespace names or globs (`team-a`, `team-*`, `*`)."""
    ssh_hosts: list[SshHostPattern] = Field(default_factory=list)
    """SSH hosts given by address (`target.ssh.host`): host or host:port globs, CIDRs."""
    instances: InstanceRule | None = None
    """EC2 instances; absent: this rule allows none."""


class _Document(ApiModel):
    # `rules` on the wire; ApiModel keeps its cross-field rules in a class attribute of that name.
    target_rules: list[TargetRule] = Field(validation_alias="rules", serialization_alias="rules")


@dataclass(frozen=True)
class TargetPolicy:
    """A parsed policy file: its rules, in order, and where it came from (named in every refusal)."""

    source: str
    rules: tuple[TargetRule, ...]

    def label(self, index: int) -> str:
        name = self.rules[index].name
        return f"rule {name!r} (rules[{index}])" if name else f"rules[{index}]"


def load_target_policy(path: Path) -> TargetPolicy:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise TargetPolicyError(f"target policy {path}: cannot read it ({e})") from None
    return parse_target_policy(text, str(path))


def parse_target_policy(text: str, source: str) -> TargetPolicy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TargetPolicyError(f"target policy {source}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise TargetPolicyError(f"target policy {source}: expected a mapping with a `rules:` list (docs/tenancy.md)")
    try:
        document = _Document.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise TargetPolicyError(f"target policy {source}: {_field(first['loc'])}: {message}") from None
    return TargetPolicy(source=source, rules=tuple(document.target_rules))


def _field(loc: tuple[Any, ...]) -> str:
    """('rules', 0, 'sshHosts', 1) → rules[0].sshHosts[1]."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
