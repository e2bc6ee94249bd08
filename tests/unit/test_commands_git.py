"""The git command builders produce exactly these argv lists, the repository URL rules refuse what would borrow the
operator's own files, SSH identity or a clear-text channel, and ls-remote output is parsed by Git's precedence."""

from __future__ import annotations

import pytest

from deploymind.commands import git

SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40

# A file:// URL's run may use the file protocol and nothing else.
SAFE_FILE = ["-c", "credential.helper=", "-c", "protocol.allow=never", "-c", "protocol.file.allow=always"]


@pytest.mark.parametrize(
    ("repo", "url"),
    [
        ("acme/shop", "https://github.com/acme/shop.git"),
        ("acme/shop.git", "https://github.com/acme/shop.git"),
        ("  acme/shop  ", "https://github.com/acme/shop.git"),
        ("https://git.example.com/acme/shop.git", "https://git.example.com/acme/shop.git"),
        ("ssh://git@git.example.com:2222/acme/shop.git", "ssh://git@git.example.com:2222/acme/shop.git"),
        ("git@github.com:acme/shop.git", "git@github.com:acme/shop.git"),
        ("file:///srv/git/shop", "file:///srv/git/shop"),
        ("/srv/git/shop", "/srv/git/shop"),
    ],
)
def test_repo_forms_map_to_fetchable_urls(repo: str, url: str) -> None:
    assert git.repo_url(repo) == url


@pytest.mark.parametrize(
    "repo",
    ["", "shop", "-uhelp/x", "ext::sh -c touch% /tmp/pwned", "../shop", "//server/share", "acme/shop/extra"],
)
def test_things_that_are_not_repositories_are_refused(repo: str) -> None:
    with pytest.raises(ValueError, match="not a repository"):
        git.repo_url(repo)


def test_a_token_inside_an_https_url_is_refused_with_a_pointer_to_the_secret() -> None:
    with pytest.raises(ValueError, match="credentialsSecretRef"):
        git.repo_url("https://x-access-token:ghp_secret@github.com/acme/shop.git")


def test_ls_remote_asks_only_for_the_tag_its_peeled_commit_and_the_branch() -> None:
    assert git.ls_remote("file:///r", "main") == [
        "git", *SAFE_FILE, "ls-remote", "--", "file:///r",
        "refs/tags/main", "refs/tags/main^{}", "refs/heads/main",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("url", "protocols"),
    [
        ("https://github.com/acme/shop.git", ["https"]),
        ("http://git.example.com/shop.git", ["http", "https"]),  # a redirect may upgrade to https, never downgrade
        ("ssh://git@git.example.com/shop.git", ["ssh"]),
        ("git@github.com:acme/shop.git", ["ssh"]),
        ("git://git.example.com/shop.git", ["git"]),
        ("/srv/git/shop", ["file"]),
    ],
)
def test_git_may_use_only_the_protocol_the_url_names(url: str, protocols: list[str]) -> None:
    argv = git.ls_remote(url, "main")
    settings = [argv[i + 1] for i, arg in enumerate(argv[: argv.index("ls-remote")]) if arg == "-c"]
    assert settings == ["credential.helper=", "protocol.allow=never", *[f"protocol.{p}.allow=always" for p in protocols]]
    assert git.protocol(url) == protocols[0]


@pytest.mark.parametrize(
    ("url", "credentials", "allow_file", "says"),
    [
        ("file:///srv/git/shop", False, False, "--allow-file-repos"),
        ("/srv/git/shop", False, False, "--allow-file-repos"),
        ("ssh://git@git.example.com/shop.git", False, True, "never logs in with its own SSH identity"),
        ("git@github.com:acme/shop.git", False, True, "never logs in with its own SSH identity"),
        ("http://git.example.com/shop.git", True, True, "the token would travel unencrypted"),
    ],
)
def test_repository_urls_that_borrow_what_only_the_operator_has_are_refused(
    url: str, credentials: bool, allow_file: bool, says: str
) -> None:
    refusal = git.access_refusal(url, credentials=credentials, allow_file=allow_file)
    assert refusal is not None
    assert refusal.startswith(f"spec.source.repo {url} ")
    assert says in refusal


@pytest.mark.parametrize(
    ("url", "credentials", "allow_file"),
    [
        ("https://github.com/acme/shop.git", False, False),
        ("https://github.com/acme/shop.git", True, False),
        ("http://git.example.com/shop.git", False, False),
        ("ssh://git@git.example.com/shop.git", True, False),
        ("git@github.com:acme/shop.git", True, False),
        ("file:///srv/git/shop", False, True),
        ("/srv/git/shop", True, True),
    ],
)
def test_repository_urls_within_the_rules_are_allowed(url: str, credentials: bool, allow_file: bool) -> None:
    assert git.access_refusal(url, credentials=credentials, allow_file=allow_file) is None


def test_ssh_uses_only_the_deploy_key_and_the_operators_repository_host_keys() -> None:
    hardened = [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/state/git_known_hosts",
    ]  # fmt: skip
    assert git.ssh_command("/tmp/k/id", "/state/git_known_hosts") == [*hardened, "-i", "/tmp/k/id"]
    assert git.ssh_command(None, "/state/git_known_hosts") == [*hardened, "-o", "PubkeyAuthentication=no"]


@pytest.mark.parametrize(("identity", "known_hosts"), [("/tmp/my key", "/k"), (None, "relative"), (None, '/a"b')])
def test_ssh_refuses_paths_it_would_split(identity: str | None, known_hosts: str) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        git.ssh_command(identity, known_hosts)


def test_ls_remote_takes_a_full_ref_name_or_head_as_given() -> None:
    assert git.ls_remote("/r", "refs/heads/release/1.x")[-3:] == ["--", "/r", "refs/heads/release/1.x"]
    assert git.ls_remote("/r", "HEAD")[-1] == "HEAD"


def test_fetch_asks_for_exactly_one_commit_without_history_or_tags() -> None:
    assert git.fetch_commit("/tmp/w", "file:///r", SHA_A) == [
        "git", *SAFE_FILE, "-C", "/tmp/w", "fetch", "--quiet", "--no-tags", "--depth", "1", "--", "file:///r", SHA_A,
    ]  # fmt: skip


def test_init_and_archive_are_plain_local_commands() -> None:
    assert git.init_bare("/tmp/w") == ["git", "init", "--quiet", "--bare", "/tmp/w"]
    assert git.archive("/tmp/w", SHA_A) == ["git", "-C", "/tmp/w", "archive", "--format=tar", SHA_A]


@pytest.mark.parametrize("sha", ["main", "a" * 39, "A" * 40, "--output=/etc/passwd"])
def test_fetch_and_archive_accept_only_full_shas(sha: str) -> None:
    with pytest.raises(ValueError, match="full commit SHA"):
        git.fetch_commit("/tmp/w", "/r", sha)
    with pytest.raises(ValueError, match="full commit SHA"):
        git.archive("/tmp/w", sha)


def test_parse_prefers_the_peeled_commit_of_an_annotated_tag() -> None:
    output = f"{SHA_A}\trefs/tags/v1\n{SHA_B}\trefs/tags/v1^{{}}\n"
    assert git.parse_ls_remote(output, "v1") == SHA_B


def test_parse_prefers_a_tag_over_a_branch_of_the_same_name_like_git_does() -> None:
    output = f"{SHA_A}\trefs/heads/v1\n{SHA_C}\trefs/tags/v1\n"
    assert git.parse_ls_remote(output, "v1") == SHA_C


def test_parse_ignores_refs_that_only_end_like_the_ref() -> None:
    output = f"{SHA_A}\trefs/remotes/origin/refs/heads/main\n{SHA_B}\trefs/heads/main\n"
    assert git.parse_ls_remote(output, "main") == SHA_B
    assert git.parse_ls_remote(f"{SHA_A}\trefs/heads/feature/main\n", "main") is None


def test_parse_of_empty_output_means_the_ref_does_not_exist() -> None:
    assert git.parse_ls_remote("", "main") is None


def test_full_sha_detection() -> None:
    assert git.is_full_sha(SHA_A)
    assert not git.is_full_sha("abc123")
    assert not git.is_full_sha("main")


def test_askpass_script_prints_the_token_from_the_environment_and_contains_no_secret() -> None:
    script = git.askpass_script("DEPLOYMIND_GIT_TOKEN")
    assert script == (
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  Username*) printf '%s\\n' 'x-access-token' ;;\n"
        "  *) printf '%s\\n' \"$DEPLOYMIND_GIT_TOKEN\" ;;\n"
        "esac\n"
    )


@pytest.mark.parametrize(("env", "user"), [("bad name", "x"), ("TOKEN", "it's")])
def test_askpass_script_refuses_names_that_would_need_quoting(env: str, user: str) -> None:
    with pytest.raises(ValueError):
        git.askpass_script(env, user)
