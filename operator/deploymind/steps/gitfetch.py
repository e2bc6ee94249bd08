"""The I/O half of the source step: resolve a ref to a commit with `git ls-remote`, and turn that commit into a
tarball cached by SHA whose sha256 is the tree digest.

Plain data in, plain data out, typed errors; no Kopf or Kubernetes here, so the source step decides what an error
means for the Deployment (a missing ref needs the user, an unreachable repository is retried).

Before Git runs, the URL must pass the operator's repository rules (`commands.git.access_refusal`): a
namespace's users choose it, so it never reaches the operator's own files, SSH identity or a clear-text channel
for a token. Git itself is held to the same rules: only the URL's protocol is enabled, and ssh runs without the
operator's ssh config, keys or agent.

A private repository's token reaches Git only through `GIT_ASKPASS`: a helper script in a private temporary
directory that prints the token from an environment variable. An SSH URL's deploy key is written to a file in
such a directory for the one run. Neither is ever in argv, in the helper file, in logs or in an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deploymind.api.reasons import (
    AUTHENTICATION_FAILED,
    HOST_KEY_REJECTED,
    INVALID_SPEC,
    REF_NOT_FOUND,
    REPOSITORY_NOT_ALLOWED,
    REPOSITORY_UNREACHABLE,
)
from deploymind.commands import git

__all__ = [
    "AUTHENTICATION_FAILED",
    "HOST_KEY_REJECTED",
    "INVALID_SPEC",
    "REF_NOT_FOUND",
    "REPOSITORY_NOT_ALLOWED",
    "REPOSITORY_UNREACHABLE",
    "GitFetchError",
    "Policy",
    "Tarball",
    "askpass",
    "fetch_tarball",
    "resolve_ref",
]

TOKEN_ENV = "DEPLOYMIND_GIT_TOKEN"

# Lower-case fragments of Git's stderr, by what they mean for the user.
_AUTH_MARKERS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "permission denied (publickey",
    "returned error: 401",
    "returned error: 403",
    "invalid username or password",
)
_HOST_KEY_MARKERS = ("host key verification failed",)
_MISSING_COMMIT_MARKERS = (
    "not our ref",
    "couldn't find remote ref",
    "no such remote ref",
    "unadvertised object",
)


@dataclass(frozen=True)
class Tarball:
    """One commit's tree as an uncompressed tar file; `digest` is the sha256 hex of its bytes."""

    path: Path
    digest: str
    size: int


@dataclass(frozen=True)
class Policy:
    """What the operator lets a Deployment's repository use: the operator's settings, never the spec's."""

    allow_file: bool = False
    """file:// URLs and plain paths read the operator's own filesystem: only with --allow-file-repos."""
    known_hosts: Path | None = None
    """Host keys of SSH repository hosts (the system's /etc/ssh/ssh_known_hosts is read as well)."""


class GitFetchError(Exception):
    """Git could not give us the commit; `message` says what to do. Reasons: RefNotFound, AuthenticationFailed,
    InvalidSpec (source.repo is no repository), RepositoryNotAllowed (the operator's repository rules refuse the
    URL; these four need the user), HostKeyRejected (the operator lacks the SSH host's key) and
    RepositoryUnreachable (retry)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def resolve_ref(
    url: str,
    ref: str,
    *,
    token: str | None = None,
    policy: Policy | None = None,
    timeout: float = 60.0,  # noqa: ASYNC109
) -> str:
    """The commit SHA that `ref` (branch, tag or full SHA) names in the repository `url` right now.

    A full SHA is returned as is, without asking the remote: it cannot move, and `fetch_tarball` reports it
    when the repository does not have it. The URL must pass `policy` either way.
    """
    policy = policy or Policy()
    remote = _remote(url, token, policy)
    if git.is_full_sha(ref.lower()):
        return ref.lower()
    with _git_env(remote, token, policy) as env:
        code, out, err = await _run(git.ls_remote(remote, ref), env=env, limit=timeout, what=f"resolving {ref!r}")
    if code != 0:
        raise _classify(err, remote, token)
    sha = git.parse_ls_remote(out.decode("utf-8", "replace"), ref)
    if sha is None:
        raise GitFetchError(
            REF_NOT_FOUND,
            f"{_redact(remote, token)} has no branch or tag {ref!r}: push it, or set source.ref to an existing "
            "branch, tag or full commit SHA",
        )
    return sha


async def fetch_tarball(
    url: str,
    sha: str,
    *,
    token: str | None = None,
    policy: Policy | None = None,
    cache_dir: Path,
    timeout: float = 300.0,  # noqa: ASYNC109
    cache_max_bytes: int | None = None,
) -> Tarball:
    """The tarball of commit `sha` (`git archive --format=tar`), fetched once and then served from `cache_dir`.

    The URL must pass `policy` even when the cache has the commit. With `cache_max_bytes`, a fetch that adds a
    tarball prunes the cache back to that size (`prune_cache`)."""
    policy = policy or Policy()
    remote = _remote(url, token, policy)
    sha = sha.lower()
    if not git.is_full_sha(sha):
        raise GitFetchError(REF_NOT_FOUND, f"{sha!r} is not a full commit SHA: resolve the ref first")
    path = cache_dir / f"{sha}.tar"
    cached = await asyncio.to_thread(_cached, path)
    if cached is not None:
        return cached

    deadline = asyncio.get_running_loop().time() + timeout
    # The work directory sits in cache_dir so the finished tarball is renamed into place atomically: a reader
    # (or a crash) never sees half a tarball under its final name.
    work = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=cache_dir))
    try:
        repo = str(work / "repo")
        with _git_env(remote, token, policy) as env:
            await _checked(git.init_bare(repo), "creating a work repository", env=env, deadline=deadline, token=token)
            code, _, err = await _run(
                git.fetch_commit(repo, remote, sha), env=env, limit=_left(deadline), what=f"fetching {sha[:12]}"
            )
            if code != 0:
                if any(marker in err.lower() for marker in _MISSING_COMMIT_MARKERS):
                    raise GitFetchError(
                        REF_NOT_FOUND,
                        f"{_redact(remote, token)} has no commit {sha}: check source.ref (was the commit force-pushed away?)",
                    )
                raise _classify(err, remote, token)
            partial = work / "archive.tar"
            with partial.open("wb") as sink:
                await _checked(
                    git.archive(repo, sha),
                    f"archiving {sha[:12]}",
                    env=env,
                    deadline=deadline,
                    token=token,
                    stdout=sink,
                )
        tarball = await asyncio.to_thread(_describe, partial)
        partial.replace(path)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    if cache_max_bytes is not None:
        await asyncio.to_thread(prune_cache, cache_dir, cache_max_bytes)
    return Tarball(path=path, digest=tarball.digest, size=tarball.size)


# A tarball used this recently may still be on its way to a host (build reads it after source resolved it).
CACHE_KEEP_RECENT_S = 3600.0


def prune_cache(cache_dir: Path, max_bytes: int, keep_recent_s: float = CACHE_KEEP_RECENT_S) -> list[Path]:
    """Delete the least recently used tarballs until the cache holds at most `max_bytes`; return what was deleted.

    A tarball used within `keep_recent_s` is never deleted (it may be in a rollout), even over the budget."""
    entries = []
    for path in cache_dir.glob("*.tar"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    entries.sort(reverse=True)  # newest use first
    total = sum(size for _, size, _ in entries)
    horizon = time.time() - keep_recent_s
    deleted = []
    for used, size, path in reversed(entries):  # oldest use first
        if total <= max_bytes or used >= horizon:
            break
        path.unlink(missing_ok=True)
        total -= size
        deleted.append(path)
    return deleted


@contextlib.contextmanager
def askpass(token: str) -> Iterator[dict[str, str]]:
    """Environment entries that let Git answer a credential prompt with `token`, valid inside the `with`.

    The helper is written with mode 0700 into a fresh directory only we can enter; it holds no secret itself
    (it prints `$DEPLOYMIND_GIT_TOKEN`), and the directory is removed on exit.
    """
    with _private_dir("deploymind-askpass-") as directory:
        helper = directory / "askpass.sh"
        _write_private(helper, git.askpass_script(TOKEN_ENV), 0o700)
        yield {"GIT_ASKPASS": str(helper), TOKEN_ENV: token}


@contextlib.contextmanager
def _ssh_identity(key: str | None, known_hosts: Path | None) -> Iterator[dict[str, str]]:
    """Environment entries that make Git's ssh log in with the deploy key `key` only (none: with no key at all),
    to a host that `known_hosts` lists, valid inside the `with`. The key file (0600) lives in a fresh private
    directory that is removed on exit."""
    hosts = str(known_hosts) if known_hosts is not None else os.devnull
    if key is None:
        yield {"GIT_SSH_COMMAND": shlex.join(git.ssh_command(None, hosts))}
        return
    with _private_dir("deploymind-ssh-") as directory:
        identity = directory / "id"
        # A Secret's value loses its final newline on the way (it is stripped); ssh refuses a key without one.
        _write_private(identity, key.rstrip("\n") + "\n", 0o600)
        yield {"GIT_SSH_COMMAND": shlex.join(git.ssh_command(str(identity), hosts))}


@contextlib.contextmanager
def _git_env(remote: str, token: str | None, policy: Policy) -> Iterator[dict[str, str]]:
    """The environment for one git run against `remote`: the operator's own Git configuration, prompts, SSH
    keys and agent are out of play; `token` is an https token, or the deploy key of an SSH URL."""
    # Git's TLS settings (a CA bundle, say) pass through; every other GIT_* variable could redirect the run
    # (GIT_DIR, GIT_CONFIG_*, GIT_ALLOW_PROTOCOL), prompt, or trace request headers into logs (GIT_TRACE_CURL);
    # SSH_AUTH_SOCK would hand ssh the operator's agent.
    env = {
        key: value
        for key, value in os.environ.items()
        if key.startswith("GIT_SSL_") or not key.startswith(("GIT_", "SSH_"))
    }
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        LC_ALL="C",  # the error classification reads Git's English messages
    )
    env.pop(TOKEN_ENV, None)
    over_ssh = git.protocol(remote) == "ssh"
    with contextlib.ExitStack() as stack:
        env.update(stack.enter_context(_ssh_identity(token if over_ssh else None, policy.known_hosts)))
        if token and not over_ssh:
            env.update(stack.enter_context(askpass(token)))
        yield env


@contextlib.contextmanager
def _private_dir(prefix: str) -> Iterator[Path]:
    directory = tempfile.mkdtemp(prefix=prefix)  # mkdtemp creates it with mode 0700
    try:
        yield Path(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _write_private(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def _remote(url: str, token: str | None, policy: Policy) -> str:
    try:
        remote = git.repo_url(url)
    except ValueError as error:
        raise GitFetchError(INVALID_SPEC, str(error)) from None
    refusal = git.access_refusal(remote, credentials=token is not None, allow_file=policy.allow_file)
    if refusal is not None:
        raise GitFetchError(REPOSITORY_NOT_ALLOWED, refusal)
    return remote


async def _checked(
    argv: Sequence[str],
    what: str,
    *,
    env: Mapping[str, str],
    deadline: float,
    token: str | None,
    stdout: IO[bytes] | None = None,
) -> None:
    """Run a local git command that should not fail; if it does, the operator's host is at fault, not the repo."""
    code, _, err = await _run(argv, env=env, limit=_left(deadline), what=what, stdout=stdout)
    if code != 0:
        raise GitFetchError(
            REPOSITORY_UNREACHABLE,
            f"git failed {what} ({_redact(_last_fatal(err), token)}): check free space and permissions of the "
            "operator's source cache",
        )


async def _run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    limit: float,
    what: str,
    stdout: IO[bytes] | None = None,
) -> tuple[int, bytes, str]:
    """Run one git command in its own process group; on timeout or cancellation the whole group is killed."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if stdout is None else stdout,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        raise GitFetchError(
            REPOSITORY_UNREACHABLE,
            f"git did not finish {what} within {limit:.0f} s: check that the repository host is reachable",
        ) from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return proc.returncode or 0, out or b"", (err or b"").decode("utf-8", "replace")


def _classify(stderr: str, remote: str, token: str | None) -> GitFetchError:
    detail = _redact(_last_fatal(stderr), token)
    where = _redact(remote, token)
    lowered = stderr.lower()
    over_ssh = git.protocol(remote) == "ssh"
    if over_ssh and any(marker in lowered for marker in _HOST_KEY_MARKERS):
        return GitFetchError(
            HOST_KEY_REJECTED,
            f"the SSH host of {where} is not in the operator's known hosts for repositories ({detail}): an "
            "administrator verifies its key and adds it to git_known_hosts in the operator's state directory",
        )
    if any(marker in lowered for marker in _AUTH_MARKERS):
        credential = "deploy key" if over_ssh else "token"
        hint = (
            f"check the {credential} in the Secret named by source.credentialsSecretRef (it needs read access)"
            if token
            else "the repository needs credentials: set source.credentialsSecretRef to a Secret holding a token"
        )
        return GitFetchError(AUTHENTICATION_FAILED, f"{where} refused our credentials ({detail}): {hint}")
    return GitFetchError(
        REPOSITORY_UNREACHABLE,
        f"cannot read {where} ({detail}): check source.repo and that the repository host is reachable",
    )


def _last_fatal(stderr: str) -> str:
    """Git's most telling line: the first `fatal:`/`error:` line, else the last non-empty one."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "no output"


def _redact(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "***")
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", text)


def _left(deadline: float) -> float:
    return max(0.1, deadline - asyncio.get_running_loop().time())


def _cached(path: Path) -> Tarball | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.utime(path)  # the cache is pruned least recently used first
    except FileNotFoundError:
        return None
    return _describe(path)


def _describe(path: Path) -> Tarball:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return Tarball(path=path, digest=digest.hexdigest(), size=size)
