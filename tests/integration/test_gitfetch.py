"""The source step's Git half against real repositories: local paths, file:// URLs, a real smart-HTTP server
(`git http-backend` over TLS) that demands a token, so the GIT_ASKPASS path is exercised end to end, and the test
world's sshd for SSH URLs with a deploy key. The operator's repository rules hold at this boundary: git never runs
for a URL they refuse."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import shutil
import ssl
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploymind.steps import gitfetch, sourcetree
from deploymind.steps.gitfetch import GitFetchError, Policy, fetch_tarball, prune_cache, resolve_ref
from world.apps import AppRepo
from world.procs import wait_until
from world.sshd import Sshd

TOKEN = "ghp_s3cr3tT0kenNeverShown1234567890"
# What an operator started with --allow-file-repos may read: the fixture repositories here are local.
LOCAL = Policy(allow_file=True)


@dataclass
class Repo:
    path: Path
    first: str  # commit of tag v1 (annotated) and tag light
    second: str  # tip of main and feature/x

    @property
    def url(self) -> str:
        return f"file://{self.path}"


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = tmp_path / "app"
    path.mkdir()
    _git(path, "init", "--quiet", "-b", "main")
    _git(path, "config", "user.email", "dev@example.com")
    _git(path, "config", "user.name", "dev")
    (path / "index.html").write_text("v1\n")
    (path / "Dockerfile").write_text("FROM scratch\n")
    _git(path, "add", ".")
    _git(path, "commit", "--quiet", "-m", "one")
    first = _git(path, "rev-parse", "HEAD")
    _git(path, "tag", "-a", "v1", "-m", "release 1")
    _git(path, "tag", "light")
    (path / "index.html").write_text("v2\n")
    _git(path, "commit", "--quiet", "-am", "two")
    _git(path, "branch", "feature/x")
    return Repo(path=path, first=first, second=_git(path, "rev-parse", "HEAD"))


def _archive_digest(repo: Repo, sha: str) -> str:
    tar = subprocess.run(["git", "-C", str(repo.path), "archive", "--format=tar", sha], capture_output=True, check=True)
    return hashlib.sha256(tar.stdout).hexdigest()


@pytest.mark.parametrize(
    ("ref", "which"),
    [("main", "second"), ("feature/x", "second"), ("refs/heads/main", "second"), ("v1", "first"), ("light", "first")],
)
async def test_branches_and_tags_resolve_to_their_commit(repo: Repo, ref: str, which: str) -> None:
    assert await resolve_ref(repo.url, ref, policy=LOCAL) == getattr(repo, which)


async def test_a_plain_path_works_like_a_file_url(repo: Repo) -> None:
    assert await resolve_ref(str(repo.path), "main", policy=LOCAL) == repo.second


async def test_a_full_sha_resolves_to_itself_in_lower_case(repo: Repo) -> None:
    assert await resolve_ref(repo.url, repo.first.upper(), policy=LOCAL) == repo.first


async def test_a_missing_ref_is_ref_not_found_and_names_the_ref(repo: Repo) -> None:
    with pytest.raises(GitFetchError) as caught:
        await resolve_ref(repo.url, "no-such-branch", policy=LOCAL)
    assert caught.value.reason == "RefNotFound"
    assert "'no-such-branch'" in caught.value.message


@pytest.mark.parametrize("url", ["/nonexistent/repo", "file:///nonexistent/repo"])
async def test_a_missing_repository_is_unreachable(url: str) -> None:
    with pytest.raises(GitFetchError) as caught:
        await resolve_ref(url, "main", policy=LOCAL)
    assert caught.value.reason == "RepositoryUnreachable"
    assert "check source.repo" in caught.value.message


async def test_an_ssh_repository_whose_host_refuses_connections_is_unreachable(unused_tcp_port: int) -> None:
    with pytest.raises(GitFetchError) as caught:
        await resolve_ref(f"ssh://git@127.0.0.1:{unused_tcp_port}/app.git", "main", token="a deploy key", timeout=20)
    assert caught.value.reason == "RepositoryUnreachable"


async def test_something_that_is_no_repository_is_an_invalid_spec() -> None:
    with pytest.raises(GitFetchError) as caught:
        await resolve_ref("ext::sh -c id", "main")
    assert caught.value.reason == "InvalidSpec"


async def test_tarball_is_git_archive_of_the_commit_and_its_digest_is_stable(repo: Repo, tmp_path: Path) -> None:
    one = await fetch_tarball(repo.url, repo.first, policy=LOCAL, cache_dir=tmp_path / "cache-a")
    two = await fetch_tarball(str(repo.path), repo.first, policy=LOCAL, cache_dir=tmp_path / "cache-b")

    assert one.digest == two.digest == _archive_digest(repo, repo.first)
    assert one.size == one.path.stat().st_size
    assert one.path == tmp_path / "cache-a" / f"{repo.first}.tar"
    with tarfile.open(one.path) as tar:
        member = tar.extractfile("index.html")
        assert member is not None and member.read() == b"v1\n"


async def test_a_cached_tarball_is_served_without_asking_git(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = await fetch_tarball(repo.url, repo.second, policy=LOCAL, cache_dir=cache)
    # With the repository gone, only the cache can answer.
    shutil.rmtree(repo.path)

    again = await fetch_tarball(repo.url, repo.second, policy=LOCAL, cache_dir=cache)

    assert again == first
    assert sorted(p.name for p in cache.iterdir()) == [f"{repo.second}.tar"]


async def test_a_new_fetch_prunes_the_least_recently_used_tarballs_beyond_the_budget(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    stale, recent = cache / ("a" * 40 + ".tar"), cache / ("b" * 40 + ".tar")
    for path in (stale, recent):
        path.write_bytes(b"x" * 4096)
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    fetched = await fetch_tarball(repo.url, repo.first, policy=LOCAL, cache_dir=cache, cache_max_bytes=4096)

    # Over budget: the tarball unused for two hours goes; one used within the hour stays (a rollout may read it).
    assert sorted(p.name for p in cache.glob("*.tar")) == sorted([recent.name, fetched.path.name])


async def test_a_cache_hit_counts_as_a_use_for_pruning(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = await fetch_tarball(repo.url, repo.first, policy=LOCAL, cache_dir=cache)
    long_ago = time.time() - 7200
    os.utime(first.path, (long_ago, long_ago))
    await fetch_tarball(repo.url, repo.first, policy=LOCAL, cache_dir=cache)  # served from the cache

    assert prune_cache(cache, max_bytes=0) == []
    assert prune_cache(cache, max_bytes=0, keep_recent_s=0) == [first.path]


async def test_fetching_a_commit_the_repository_lacks_is_ref_not_found_and_leaves_no_debris(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(GitFetchError) as caught:
        await fetch_tarball(repo.url, "1" * 40, policy=LOCAL, cache_dir=cache)
    assert caught.value.reason == "RefNotFound"
    assert list(cache.iterdir()) == []


async def test_fetching_from_a_missing_repository_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(GitFetchError) as caught:
        await fetch_tarball(str(tmp_path / "gone"), "1" * 40, policy=LOCAL, cache_dir=tmp_path / "cache")
    assert caught.value.reason == "RepositoryUnreachable"


# --- private repositories: a real smart-HTTP Git server (TLS) that wants a token ---------------------------


@dataclass
class GitServer:
    """`git http-backend` behind TLS and Basic auth; records what it saw while serving an authenticated request."""

    root: Path
    token: str
    port: int = 0
    authorizations: list[str] = field(default_factory=list)
    command_lines: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.port}/{name}"


def _all_command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return lines


def _handler(server: GitServer) -> type[http.server.BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"x-access-token:{server.token}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            given = self.headers.get("Authorization")
            if given:
                server.authorizations.append(given)
            if given != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            # The client (git, git-remote-http, the askpass helper's parent) is alive right now: look at every argv.
            server.command_lines.extend(_all_command_lines())
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": "x-access-token",
                "REMOTE_ADDR": "127.0.0.1",
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            }
            cgi = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env, check=False)
            head, _, payload = cgi.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, check=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def git_server(repo: Repo, tmp_path: Path, tls_cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[GitServer]:
    root = tmp_path / "served"
    root.mkdir()
    subprocess.run(["git", "clone", "--quiet", "--bare", str(repo.path), str(root / "app.git")], check=True)
    server = GitServer(root=root, token=TOKEN)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*tls_cert)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    # The operator's CA bundle setting reaches git (GIT_SSL_* passes through): here it trusts the test certificate.
    monkeypatch.setenv("GIT_SSL_CAINFO", str(tls_cert[0]))
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    httpd.shutdown()
    httpd.server_close()
    thread.join()


async def test_a_private_repository_is_read_with_the_token_which_no_command_line_shows(
    git_server: GitServer, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = git_server.url("app.git")
    # An operator started with Git tracing on must not write request headers (the token) anywhere.
    trace = tmp_path / "curl-trace"
    monkeypatch.setenv("GIT_TRACE_CURL", str(trace))

    sha = await resolve_ref(url, "main", token=TOKEN)
    tarball = await fetch_tarball(url, sha, token=TOKEN, cache_dir=tmp_path / "cache")

    assert sha == repo.second
    assert tarball.digest == _archive_digest(repo, sha)
    expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert expected in git_server.authorizations  # the token did travel, over HTTP auth
    assert git_server.command_lines, "the server saw no authenticated request"
    assert not [line for line in git_server.command_lines if TOKEN in line]
    assert not trace.exists()


async def test_a_wrong_token_is_authentication_failed_and_the_message_hides_it(git_server: GitServer) -> None:
    wrong = "ghp_wrongTokenAlsoSecret0987654321"
    with pytest.raises(GitFetchError) as caught:
        await resolve_ref(git_server.url("app.git"), "main", token=wrong)
    assert caught.value.reason == "AuthenticationFailed"
    assert wrong not in caught.value.message and wrong not in str(caught.value)
    assert "credentialsSecretRef" in caught.value.message


async def test_no_token_for_a_private_repository_asks_for_credentials_instead_of_hanging(
    git_server: GitServer,
) -> None:
    with pytest.raises(GitFetchError) as caught:
        await resolve_ref(git_server.url("app.git"), "main", timeout=20)
    assert caught.value.reason == "AuthenticationFailed"
    assert "set source.credentialsSecretRef" in caught.value.message


def test_askpass_helper_prints_the_token_from_its_environment_and_holds_no_secret() -> None:
    with gitfetch.askpass(TOKEN) as env:
        helper = Path(env["GIT_ASKPASS"])
        assert stat.S_IMODE(helper.stat().st_mode) == 0o700
        assert stat.S_IMODE(helper.parent.stat().st_mode) == 0o700
        assert TOKEN not in helper.read_text()
        assert TOKEN not in env["GIT_ASKPASS"]

        def ask(prompt: str) -> str:
            argv = [str(helper), prompt]
            assert TOKEN not in " ".join(argv)
            done = subprocess.run(argv, env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True)
            return done.stdout

        assert ask("Password for 'https://x-access-token@github.com': ") == TOKEN + "\n"
        assert ask("Username for 'https://github.com': ") == "x-access-token\n"
    assert not helper.parent.exists()


async def test_a_token_is_never_sent_over_plain_http(unused_tcp_port: int) -> None:
    with pytest.raises(GitFetchError) as caught:
        await resolve_ref(f"http://127.0.0.1:{unused_tcp_port}/app.git", "main", token=TOKEN)
    assert caught.value.reason == "RepositoryNotAllowed"
    assert "use the repository's https:// URL" in caught.value.message
    assert TOKEN not in caught.value.message


# --- the repository rules hold at this boundary ----------------------------------------------------------


async def test_a_local_repository_needs_allow_file_repos_even_by_sha_or_from_the_cache(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    await fetch_tarball(repo.url, repo.second, policy=LOCAL, cache_dir=cache)

    attempts = [
        resolve_ref(repo.url, "main"),
        resolve_ref(str(repo.path), "main"),
        resolve_ref(repo.url, repo.second),  # a full SHA needs no ls-remote, but still the rules
        fetch_tarball(repo.url, repo.second, cache_dir=cache),  # the cache has it, but the rules come first
    ]
    for attempt in attempts:
        with pytest.raises(GitFetchError) as caught:
            await attempt
        assert caught.value.reason == "RepositoryNotAllowed"
        assert "--allow-file-repos" in caught.value.message and "spec.source.repo" in caught.value.message


# --- SSH URLs: the Deployment's deploy key, never the operator's identity ----------------------------------


@pytest.fixture
def ssh_repo(sshd: Sshd, app_repo: AppRepo) -> str:
    """The fixture app's repository as the test world's sshd serves it to its login user."""
    return f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{app_repo.path}"


@pytest.fixture
def operator_agent(sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An ssh-agent in the operator's environment (SSH_AUTH_SOCK) holding a key the sshd accepts."""
    socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL)
    try:
        wait_until(socket.exists, 10, "ssh-agent's socket")
        subprocess.run(["ssh-add", "-q", str(sshd.key_path)], env={**os.environ, "SSH_AUTH_SOCK": str(socket)},
                       capture_output=True, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
        yield socket
    finally:
        agent.terminate()
        agent.wait(10)


def _new_key(directory: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "other")], check=True)
    return (directory / "other").read_text()


async def test_an_ssh_repository_is_read_with_the_deploy_key(sshd: Sshd, ssh_repo: str, app_repo: AppRepo,
                                                              tmp_path: Path) -> None:
    policy = Policy(known_hosts=sshd.known_hosts_path)
    key = sshd.private_key.strip()  # as the operator reads a Secret's value

    sha = await resolve_ref(ssh_repo, "main", token=key, policy=policy)
    tarball = await fetch_tarball(ssh_repo, sha, token=key, policy=policy, cache_dir=tmp_path / "cache")

    assert sha == app_repo.head()
    with tarfile.open(tarball.path) as tar:
        assert "Dockerfile" in tar.getnames()


async def test_an_ssh_url_without_a_deploy_key_is_refused_before_ssh_runs(ssh_repo: str, operator_agent: Path) -> None:
    with pytest.raises(GitFetchError) as caught:
        await resolve_ref(ssh_repo, "main", policy=Policy(known_hosts=operator_agent))
    assert caught.value.reason == "RepositoryNotAllowed"
    assert "credentialsSecretRef" in caught.value.message and "own SSH identity" in caught.value.message


async def test_the_operators_ssh_agent_is_never_offered_to_the_repository_host(
    sshd: Sshd, ssh_repo: str, operator_agent: Path, tmp_path: Path
) -> None:
    # The agent holds a key the host accepts; the Deployment's deploy key is another one. Only the deploy key counts.
    wrong = _new_key(tmp_path)
    with pytest.raises(GitFetchError) as caught:
        await resolve_ref(ssh_repo, "main", token=wrong, policy=Policy(known_hosts=sshd.known_hosts_path))
    assert caught.value.reason == "AuthenticationFailed"
    assert "deploy key" in caught.value.message
    assert "PRIVATE KEY" not in caught.value.message


async def test_an_ssh_host_the_operator_does_not_know_is_host_key_rejected(sshd: Sshd, ssh_repo: str,
                                                                         tmp_path: Path) -> None:
    empty = tmp_path / "git_known_hosts"
    empty.write_text("")
    with pytest.raises(GitFetchError) as caught:
        await resolve_ref(ssh_repo, "main", token=sshd.private_key, policy=Policy(known_hosts=empty))
    assert caught.value.reason == "HostKeyRejected"
    assert "git_known_hosts" in caught.value.message


# --- symlinks: a commit's tree lists them as Git wrote them ---------------------------------------------------


async def test_symlinks_out_of_a_commit_are_found_in_its_tarball_with_their_targets(repo: Repo, tmp_path: Path) -> None:
    (repo.path / "keys").symlink_to(Path.home() / ".ssh")
    (repo.path / "app").mkdir()
    (repo.path / "app" / "Dockerfile").symlink_to("../../../.docker/config.json")
    (repo.path / "www").symlink_to("app")  # stays inside
    _git(repo.path, "add", ".")
    _git(repo.path, "commit", "--quiet", "-m", "hostile")
    sha = _git(repo.path, "rev-parse", "HEAD")

    tarball = await fetch_tarball(repo.url, sha, policy=LOCAL, cache_dir=tmp_path / "cache")
    entries = sourcetree.read_entries(tarball.path)

    links = {e.path: e.link_target for e in entries if e.link_target is not None}
    assert links == {"keys": str(Path.home() / ".ssh"), "app/Dockerfile": "../../../.docker/config.json", "www": "app"}
    dockerfile = sourcetree.unsafe_reason(entries, {"spec.build.context": "www", "spec.build.dockerfile": "www/Dockerfile"})
    assert dockerfile is not None and dockerfile.startswith("spec.build.dockerfile (the repository's 'www/Dockerfile')")
    assert "'app/Dockerfile' → '../../../.docker/config.json'" in dockerfile
    anywhere = sourcetree.unsafe_reason(entries, {"spec.build.context": ".", "spec.build.dockerfile": "Dockerfile"})
    assert anywhere is not None and f"'keys' → '{Path.home() / '.ssh'}'" in anywhere
