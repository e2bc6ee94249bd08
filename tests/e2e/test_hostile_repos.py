"""Hostile repositories and repository URLs the operator must not follow, through the real operator process.

A commit whose build context, Dockerfile or any other symlink leads out of its tree is Stalled `UnsafeSource`
before anything reaches the host: the secrets in the home directory it points at end up in no image, no status,
no Event and no log line. Repository URLs that would borrow the operator's own files (file:// without
--allow-file-repos) or SSH identity (an SSH URL without credentialsSecretRef) are Stalled `RepositoryNotAllowed`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_rbac import chart_operator_kubeconfig
from dm import Cluster, Operator, deployment, docker, leave_no_trace, ready

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo, create_app_repo
from world.dirs import private_dir
from world.kube import Kube
from world.ports import free_port

pytestmark = pytest.mark.e2e

STALL_TIMEOUT_S = 60


@pytest.fixture
def home(world_root: Path) -> tuple[Path, str]:
    """A home directory with what a login user keeps there (an SSH key, a registry login) holding a secret."""
    secret = f"HOST-SECRET-{uuid.uuid4().hex}"
    home = private_dir(world_root, f"home-{uuid.uuid4().hex[:8]}", mode=0o755)
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n")
    (home / ".docker").mkdir()
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {"registry.invalid": {"auth": secret}}}))
    # Were the home the build context, this would copy all of it into the image.
    (home / "Dockerfile").write_text("FROM scratch\nCOPY . /stolen\n")
    return home, secret


def _repo(world_root: Path) -> AppRepo:
    return create_app_repo(private_dir(world_root, "apps") / uuid.uuid4().hex[:12])


def _stalled(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Stalled")


def test_a_commit_with_symlinks_out_of_its_tree_is_refused_and_nothing_of_the_host_leaks(
    cluster: Cluster, operator: Operator, docker_engine: DockerEngine, world_root: Path, home: tuple[Path, str]
) -> None:
    home_dir, secret = home
    context_repo, dockerfile_repo, anywhere_repo = _repo(world_root), _repo(world_root), _repo(world_root)
    (context_repo.path / "app").symlink_to(home_dir)
    context_repo.commit_all("the build context is the login user's home")
    (dockerfile_repo.path / "Dockerfile").unlink()
    (dockerfile_repo.path / "Dockerfile").symlink_to(home_dir / ".docker" / "config.json")
    dockerfile_repo.commit_all("the Dockerfile is the registry login")
    (anywhere_repo.path / "www" / "home").symlink_to(Path.home())  # the operator's (local transport: the host's) home
    anywhere_repo.commit_all("a link to the login user's home")

    cases = {
        "context": (context_repo, {"build": {"context": "app"}},
                    f"spec.build.context (the repository's 'app') leads outside the repository through the symlink "
                    f"'app' → '{home_dir}'"),
        "dockerfile": (dockerfile_repo, {},
                       "spec.build.dockerfile (the repository's 'Dockerfile') leads outside the repository through "
                       f"the symlink 'Dockerfile' → '{home_dir / '.docker' / 'config.json'}'"),
        "anywhere": (anywhere_repo, {}, f"the symlink 'www/home' → '{Path.home()}' leads outside the repository"),
    }
    for name, (repo, spec, _) in cases.items():
        cluster.apply(deployment(name, repo, free_port(), **spec))

    for name, (repo, _, says) in cases.items():
        status = cluster.wait_status(name, lambda s: ready(s) == "False/UnsafeSource", STALL_TIMEOUT_S, "UnsafeSource")
        stalled = _stalled(status)
        assert stalled["reason"] == "UnsafeSource"
        assert stalled["message"].startswith(f"commit {repo.head()[:12]} cannot be built: {says}"), stalled["message"]
        source = next(c for c in status["conditions"] if c["type"] == "SourceReady")
        assert (source["status"], source["reason"]) == ("False", "UnsafeSource")
        # Refused before the build: nothing was sent to the host, nothing built there.
        assert all(c["type"] != "Built" for c in status["conditions"])
        uid = cluster.get(name)["metadata"]["uid"]
        assert not (operator.host_dir / uid[:8] / "builds").exists()
        assert docker(docker_engine, "image", "ls", "-q", f"deploymind/{uid[:8]}").strip() == ""

    events = cluster.events()
    refused = {e["involvedObject"]["name"] for e in events if e.get("reason") == "UnsafeSource"}
    assert refused == set(cases)
    everything = json.dumps([cluster.get(name) for name in cases]) + json.dumps(events) + operator.logs()
    assert secret not in everything


@pytest.fixture
def strict_operator(kube: Kube, docker_engine: DockerEngine, namespace: str, world_root: Path) -> Iterator[Operator]:
    """`deploymind run` as an administrator would start it: without --allow-file-repos."""
    op = Operator(kubeconfig=chart_operator_kubeconfig(kube, namespace), namespace=namespace, allow_file_repos=False,
                  workdir=private_dir(world_root, f"operator-{namespace}", mode=0o755), env=dict(docker_engine.env))
    op.start()
    yield op
    op.stop()
    leave_no_trace(op, docker_engine, namespace)


def test_repository_urls_outside_the_rules_are_stalled_each_with_its_reason(
    cluster: Cluster, strict_operator: Operator, app_repo: AppRepo
) -> None:
    cases = {
        "local": (app_repo.url, "--allow-file-repos"),
        "ssh-url": ("ssh://git@127.0.0.1:1/app.git", "never logs in with its own SSH identity"),
        "scp-like": ("git@127.0.0.1:app.git", "never logs in with its own SSH identity"),
    }
    for name, (url, _) in cases.items():
        cluster.apply(deployment(name, app_repo, free_port(), source={"repo": url}))

    for name, (url, says) in cases.items():
        status = cluster.wait_status(name, lambda s: ready(s) == "False/RepositoryNotAllowed", STALL_TIMEOUT_S,
                                     "RepositoryNotAllowed")
        message = _stalled(status)["message"]
        assert message.startswith(f"spec.source.repo {url} ") and says in message

    # A token over plain http:// never gets as far as the operator: the CRD's schema admits https:// only.
    over_http = deployment("http", app_repo, free_port(),
                           source={"repo": "http://127.0.0.1:1/app.git", "credentialsSecretRef": {"name": "t", "key": "k"}})
    refused = cluster.run("apply", "-f", "-", input=json.dumps(over_http), check=False)
    assert refused.returncode != 0 and "spec.source.repo" in refused.stderr
