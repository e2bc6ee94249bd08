"""The operator image does what a locked-down pod needs: it runs `deploymind run` as user 65532 on a read-only root
filesystem against the API server, keeps its history in the state dir, and carries the git, ssh and Trivy its
steps call, without compilers or the sandbox's emulator-only dependencies."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tomllib
import urllib.request
import uuid
from pathlib import Path

import pytest
from dm import wait_for
from imagebuild import IMAGE_UID, REPO, DockerCli, DockerRun
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploymind.history.migrate import VERSION_TABLE
from deploymind.history.models import Base
from world.apps import AppRepo
from world.dirs import private_dir
from world.kube import Kube
from world.ports import free_port
from world.tools import trivy_path

# The debootstrap and the build happen in the first test's setup: give the whole module room for them.
pytestmark = [pytest.mark.image, pytest.mark.timeout(600)]

FAKE_GITHUB_TOKEN = "ghp_" + "R8nq2LkW5vZx7TyP3sJd9HfA1gMc4BeU6oQi"


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project


def _names(requirements: object) -> set[str]:
    assert isinstance(requirements, list)
    return {canonicalize_name(Requirement(str(r)).name) for r in requirements}


def test_image_runs_deploymind_as_user_65532(operator_image: str, docker_cli: DockerCli,
                                             docker_run: DockerRun) -> None:
    config = json.loads(docker_cli("image", "inspect", "--format", "{{json .Config}}", operator_image).stdout)

    helped = docker_run("--help")

    assert (config["User"], config["Entrypoint"], config["Cmd"]) == (f"{IMAGE_UID}:{IMAGE_UID}", ["deploymind"], ["run"])
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: deploymind") and "run" in helped.stdout, helped.stdout


# Prints {distribution: [its requirements]} for everything installed in the image's Python.
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.name: d.requires or [] for d in m.distributions()}))"
)


def _required(requirements: dict[str, list[str]]) -> set[str]:
    """Names that some installed distribution needs (requirements of its extras left out)."""
    needed: set[str] = set()
    for lines in requirements.values():
        for line in lines:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                needed.add(canonicalize_name(requirement.name))
    return needed


def test_image_holds_the_runtime_dependencies_and_no_compiler_or_sandbox_extra(docker_run: DockerRun) -> None:
    project = _project()
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    listed = docker_run("-c", LIST_DISTRIBUTIONS, entrypoint="python3")
    compilers = docker_run("-c", "for c in cc gcc c++ g++ clang make ld as; do command -v $c; done; true",
                           entrypoint="sh")

    assert listed.returncode == 0, listed.stderr
    requirements: dict[str, list[str]] = json.loads(listed.stdout)
    installed = {canonicalize_name(name) for name in requirements}
    # The sandbox extra also names a few packages the runtime needs anyway (kopf requires jsonpatch).
    emulator_only = _names(extras["sandbox"]) - _required(requirements)
    assert "deploymind" in installed
    assert _names(project["dependencies"]) <= installed
    assert emulator_only and not emulator_only & installed, emulator_only & installed
    assert compilers.returncode == 0 and compilers.stdout == "", compilers.stdout


def test_operator_in_image_serves_healthz_and_creates_its_history_store(
        kube: Kube, world_root: Path, docker_run: DockerRun, docker_cli: DockerCli) -> None:
    workdir = private_dir(world_root, f"image-operator-{uuid.uuid4().hex[:8]}")
    # The container's user must read the kubeconfig (the emulator's is root's, mode 0600) and own the state dir.
    kubeconfig = workdir / "kubeconfig"
    shutil.copyfile(kube.kubeconfig, kubeconfig)
    state = private_dir(workdir, "state", mode=0o700)
    for path in (kubeconfig, state):
        shutil.chown(path, IMAGE_UID, IMAGE_UID)
    port = free_port()
    name = f"dm-image-{uuid.uuid4().hex[:8]}"

    started = docker_run("run", "--kubeconfig", "/etc/deploymind/kubeconfig", "--namespace", f"image-{name}",
                         "--http-host", "127.0.0.1", "--http-port", str(port), name=name, state=state,
                         mounts=[f"{kubeconfig}:/etc/deploymind/kubeconfig:ro"])
    assert started.returncode == 0, started.stderr

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)

    def history_tables() -> set[str] | None:
        store = state / "history.sqlite3"
        if not store.exists():
            return None
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return tables if set(Base.metadata.tables) <= tables else None

    try:
        wait_for(healthy, 60, "/healthz of the operator in the image")
        tables = wait_for(history_tables, 30, "the history tables in the state dir's SQLite file")
    except AssertionError:
        logs = docker_cli("logs", name)
        raise AssertionError(f"operator log:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}") from None

    assert VERSION_TABLE in tables
    assert docker_cli("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"


def test_trivy_in_image_finds_a_planted_secret_offline(world_root: Path, docker_run: DockerRun) -> None:
    tree = private_dir(world_root, f"image-scan-{uuid.uuid4().hex[:8]}", mode=0o755)
    (tree / "settings.env").write_text(f"GITHUB_TOKEN={FAKE_GITHUB_TOKEN}\n")

    version = docker_run("--version", entrypoint="trivy")
    scan = docker_run("fs", "--cache-dir", "/tmp/trivy", "--offline-scan", "--skip-db-update", "--skip-check-update",
                      "--scanners", "secret,misconfig", "--format", "json", "--quiet", "/scan",
                      entrypoint="trivy", mounts=[f"{tree}:/scan:ro"])

    assert "0.59.1" in version.stdout
    assert scan.returncode == 0, scan.stderr
    secrets = [(result["Target"], secret["RuleID"]) for result in json.loads(scan.stdout).get("Results", [])
               for secret in result.get("Secrets", [])]
    assert secrets == [("settings.env", "github-pat")]


def test_git_in_image_lists_a_mounted_repository_and_ssh_runs(app_repo: AppRepo, world_root: Path,
                                                              docker_run: DockerRun) -> None:
    # git refuses a repository its user does not own ("dubious ownership"): the mounted copy is the image user's.
    bare = world_root / f"image-repo-{uuid.uuid4().hex[:8]}.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(app_repo.path), str(bare)], check=True, timeout=60)
    subprocess.run(["chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(bare)], check=True, timeout=60)

    listed = docker_run("ls-remote", "/repo.git", "refs/heads/main", entrypoint="git",
                        mounts=[f"{bare}:/repo.git:ro"])
    ssh = docker_run("-V", entrypoint="ssh")

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [app_repo.head(), "refs/heads/main"]
    assert ssh.returncode == 0 and "OpenSSH" in ssh.stderr, ssh.stderr


def test_dockerfile_passes_trivy_misconfig_checks_at_high(tmp_path: Path) -> None:
    scan = subprocess.run(
        [str(trivy_path()), "config", "--cache-dir", str(tmp_path / "trivy"), "--skip-check-update",
         "--severity", "HIGH,CRITICAL", "--exit-code", "1", "--format", "json", "--quiet", str(REPO / "Dockerfile")],
        capture_output=True, text=True, check=False, timeout=120,
    )

    findings = [(m["ID"], m["Title"]) for result in json.loads(scan.stdout or "{}").get("Results", [])
                for m in result.get("Misconfigurations", [])]
    assert scan.returncode == 0 and findings == [], scan.stderr or findings
