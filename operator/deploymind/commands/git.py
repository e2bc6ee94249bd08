"""Git commands as data: argv lists for resolving a ref and turning one commit into a tarball, the rules for
which repository URLs the operator fetches from, and the pure parsing of Git's output. No I/O here;
`steps/gitfetch.py` runs them.

Every argv starts with `git -c …` settings that make a run independent of the operator's own Git
configuration (no stored credentials, no interactive prompts, only the protocol the URL names), and passes the
repository after `--` so a URL can never be read as an option.
"""

from __future__ import annotations

import re

GITHUB_URL = "https://github.com/{repo}.git"

# `owner/name` is GitHub shorthand; anything with a scheme, an scp-like `user@host:path`, or an absolute path
# is already something Git can fetch from.
_SHORTHAND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
_URL = re.compile(r"^(https?|ssh|git|file)://\S+$")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:\S+$")
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")

ALLOW_FILE_FLAG = "--allow-file-repos"
# The protocols Git may use to fetch a URL of each kind: plain http may be redirected to https, never the other
# way round, and nothing else (`ext::`, or `file` behind an https URL's back) is ever allowed.
_PROTOCOLS = {"https": ("https",), "http": ("http", "https"), "ssh": ("ssh",), "git": ("git",), "file": ("file",)}
# A path handed to ssh inside an `-o` option, where ssh would split it at whitespace or quotes.
_SSH_OPTION_PATH = re.compile(r"^/[^\s\"']+$")


def repo_url(repo: str) -> str:
    """The URL Git fetches from for a spec's `source.repo` (`owner/name` means GitHub over https)."""
    repo = repo.strip()
    if re.match(r"^https?://[^/@]*:[^/@]*@", repo):
        raise ValueError(
            "source.repo carries a password or token in its URL, where it would show on command lines: "
            "remove it and put the token into the Secret named by source.credentialsSecretRef"
        )
    if _SHORTHAND.match(repo) and not repo.startswith("."):
        return GITHUB_URL.format(repo=repo.removesuffix(".git"))
    if _URL.match(repo) or _SCP_LIKE.match(repo) or (repo.startswith("/") and not repo.startswith("//")):
        return repo
    raise ValueError(
        f"source.repo {repo!r} is not a repository: use owner/name (GitHub), an https://, ssh://, git:// "
        "or file:// URL, user@host:path, or an absolute path"
    )


def protocol(url: str) -> str:
    """The Git protocol a URL from `repo_url` is fetched with: https, http, ssh, git or file."""
    scheme, separator, _ = url.partition("://")
    if separator:
        return scheme
    return "file" if url.startswith("/") else "ssh"  # an absolute path, else scp-like user@host:path


def access_refusal(url: str, *, credentials: bool, allow_file: bool) -> str | None:
    """Why the operator must not fetch the URL `url` from `repo_url` for a Deployment, or None when it may.

    A namespace's users choose the URL, so it must never borrow what only the operator has: its own files
    (file:// or a path, unless the operator runs with --allow-file-repos), its own SSH identity (an SSH URL needs
    the Deployment's own key in `credentials`), or a clear-text channel for the Deployment's token (http://).
    """
    kind = protocol(url)
    if kind == "file" and not allow_file:
        return (
            f"spec.source.repo {url} is a repository on the operator's own filesystem: the operator reads those only "
            f"when it runs with {ALLOW_FILE_FLAG} (the sandbox and the tests do); use an https:// or ssh:// URL"
        )
    if kind == "ssh" and not credentials:
        return (
            f"spec.source.repo {url} is an SSH URL and spec.source.credentialsSecretRef is not set: the operator "
            "never logs in with its own SSH identity; set credentialsSecretRef to a Secret key holding a deploy "
            "key (an SSH private key with read access), or use an https:// URL"
        )
    if kind == "http" and credentials:
        return (
            f"spec.source.repo {url} is plain http:// and spec.source.credentialsSecretRef is set: the token would "
            "travel unencrypted; use the repository's https:// URL"
        )
    return None


def ssh_command(identity: str | None, known_hosts: str) -> list[str]:
    """The ssh command Git runs for an SSH URL (GIT_SSH_COMMAND): it logs in with `identity` only, and only to a
    host whose key `known_hosts` lists. The operator's ssh config, default keys and agent are never consulted."""
    for path in (identity, known_hosts):
        if path is not None and not _SSH_OPTION_PATH.match(path):
            raise ValueError(f"{path!r} is not an absolute path without spaces or quotes")
    argv = [
        "ssh", "-F", "/dev/null",
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
    ]  # fmt: skip
    if identity is None:
        return [*argv, "-o", "PubkeyAuthentication=no"]
    return [*argv, "-i", identity]


def is_full_sha(ref: str) -> bool:
    """True when `ref` already names a commit (40 lowercase hex digits), so it needs no ls-remote."""
    return bool(FULL_SHA.match(ref))


def ref_candidates(ref: str) -> list[str]:
    """Full ref names `ref` may mean, in Git's own order of precedence (tags before branches)."""
    if ref == "HEAD" or ref.startswith("refs/"):
        return [ref]
    return [f"refs/tags/{ref}", f"refs/heads/{ref}"]


def ls_remote(url: str, ref: str) -> list[str]:
    """`git ls-remote` limited to the refs `ref` may mean, including peeled annotated tags."""
    patterns: list[str] = []
    for name in ref_candidates(ref):
        patterns.append(name)
        if name.startswith("refs/tags/"):
            patterns.append(name + "^{}")
    return ["git", *_safe_config(url), "ls-remote", "--", url, *patterns]


def parse_ls_remote(output: str, ref: str) -> str | None:
    """The commit `ref` resolves to in `git ls-remote` output, or None when no candidate ref exists.

    An annotated tag points at a tag object; its peeled line (`…^{}`) names the commit, so it wins.
    """
    found: dict[str, str] = {}
    for line in output.splitlines():
        sha, _, name = line.strip().partition("\t")
        if FULL_SHA.match(sha) and name:
            found[name] = sha
    for name in ref_candidates(ref):
        peeled = found.get(name + "^{}")
        if peeled:
            return peeled
        if name in found:
            return found[name]
    return None


def init_bare(directory: str) -> list[str]:
    """An empty bare repository to fetch one commit into."""
    return ["git", "init", "--quiet", "--bare", directory]


def fetch_commit(directory: str, url: str, sha: str) -> list[str]:
    """Fetch exactly one commit (no history) by its SHA into the repository at `directory`."""
    _require_sha(sha)
    return ["git", *_safe_config(url), "-C", directory, "fetch", "--quiet", "--no-tags", "--depth", "1", "--", url, sha]


def archive(directory: str, sha: str) -> list[str]:
    """The commit's tree as an uncompressed tar on stdout: byte-identical for one commit and Git version."""
    _require_sha(sha)
    return ["git", "-C", directory, "archive", "--format=tar", sha]


def askpass_script(token_env: str, username: str = "x-access-token") -> str:
    """A GIT_ASKPASS helper: answers the username prompt with `username` and any other prompt with the token
    read from the environment variable `token_env`, so the token is never in argv or in the file."""
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", token_env):
        raise ValueError(f"{token_env!r} is not an environment variable name")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", username):
        raise ValueError(f"{username!r} is not a plain user name")
    lines = [
        "#!/bin/sh",
        'case "$1" in',
        f"  Username*) printf '%s\\n' '{username}' ;;",
        f"  *) printf '%s\\n' \"${token_env}\" ;;",
        "esac",
    ]
    return "\n".join(lines) + "\n"


def _require_sha(sha: str) -> None:
    if not FULL_SHA.match(sha):
        raise ValueError(f"{sha!r} is not a full commit SHA (40 lowercase hex digits)")


def _safe_config(url: str) -> list[str]:
    """Settings for a git run against `url`: no credential helpers (a token comes only through GIT_ASKPASS) and
    no protocol but the one the URL names, so neither a redirect nor a crafted URL can switch transports."""
    allowed = _PROTOCOLS.get(protocol(url), ())
    config = ["-c", "credential.helper=", "-c", "protocol.allow=never"]
    for name in allowed:
        config += ["-c", f"protocol.{name}.allow=always"]
    return config
