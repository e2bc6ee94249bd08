"""A commit's tree is refused when a symlink or a build path leads outside it, resolved as the kernel would after
extraction (chains of links included); links that stay inside, dangling or not, are fine."""

from __future__ import annotations

import pytest

from deploymind.steps.sourcetree import Entry, Escape, find_escape, unsafe_reason

BUILD = {"spec.build.context": ".", "spec.build.dockerfile": "Dockerfile"}


def tree(**links: str) -> list[Entry]:
    """A tree with a Dockerfile, a www/ directory and the given symlinks (`name=target`; `__` stands for `/`)."""
    plain = [Entry("Dockerfile"), Entry("www/"), Entry("www/index.html")]
    return plain + [Entry(name.replace("__", "/"), link_target=target) for name, target in links.items()]


@pytest.mark.parametrize(
    "links",
    [
        {"current": "www"},
        {"www__home": "index.html"},
        {"www__up": "../Dockerfile"},
        {"dangling": "www/not-there"},
        {"a": "b", "b": "www"},  # a chain that stays inside
        {"www__self": "."},
    ],
)
def test_symlinks_that_stay_inside_the_tree_are_fine(links: dict[str, str]) -> None:
    assert unsafe_reason(tree(**links), BUILD) is None


@pytest.mark.parametrize(
    ("links", "culprit", "target"),
    [
        ({"keys": "/home/dm-tester/.ssh"}, "keys", "/home/dm-tester/.ssh"),
        ({"up": ".."}, "up", ".."),
        ({"www__out": "../../etc/passwd"}, "www/out", "../../etc/passwd"),
        ({"www__x": "../www/../.."}, "www/x", "../www/../.."),
        # Each link alone looks harmless; together they climb out: `deep` is the tree's root, `out` goes above it.
        ({"sub__deep": "..", "out": "sub/deep/.."}, "out", "sub/deep/.."),
        ({"hop": "www/../abs", "abs": "/root"}, "abs", "/root"),
    ],
)
def test_a_symlink_leading_out_of_the_tree_is_refused_naming_it_and_its_target(
    links: dict[str, str], culprit: str, target: str
) -> None:
    reason = unsafe_reason(tree(**links), BUILD)

    assert reason is not None
    assert f"{culprit!r}" in reason and f"{target!r}" in reason
    assert "outside the repository" in reason


def test_a_symlink_loop_is_refused_rather_than_followed_forever() -> None:
    escape = find_escape("a", {"a": "b", "b": "a"})
    # After MAX_LINKS (40, as the kernel) links, the next one followed is `a` again.
    assert escape == Escape(path="a", link="a", target="b")


def test_a_symlinked_build_context_names_the_spec_field() -> None:
    reason = unsafe_reason(tree(app="/home/dm-tester"), {"spec.build.context": "app",
                                                        "spec.build.dockerfile": "app/Dockerfile"})
    assert reason is not None
    assert reason.startswith("spec.build.context (the repository's 'app') leads outside the repository")
    assert "'/home/dm-tester'" in reason


def test_a_symlinked_dockerfile_names_the_spec_field() -> None:
    entries = [Entry("www/"), Entry("www/Dockerfile", link_target="/home/dm-tester/.docker/config.json")]
    reason = unsafe_reason(entries, {"spec.build.context": "www", "spec.build.dockerfile": "www/Dockerfile"})
    assert reason is not None
    assert reason.startswith("spec.build.dockerfile (the repository's 'www/Dockerfile') leads outside")


def test_a_build_path_through_a_symlinked_directory_is_refused() -> None:
    entries = tree(src="../outside")
    reason = unsafe_reason(entries, {"spec.build.context": "src/app", "spec.build.dockerfile": "src/app/Dockerfile"})
    assert reason is not None and reason.startswith("spec.build.context")


@pytest.mark.parametrize("entry", [Entry("../evil"), Entry("/etc/cron.d/x"), Entry("fifo", plain=False)])
def test_members_git_never_writes_are_refused(entry: Entry) -> None:
    reason = unsafe_reason([*tree(), entry], BUILD)
    assert reason is not None and f"{entry.path!r}" in reason


def test_every_escaping_symlink_is_named_up_to_a_count() -> None:
    reason = unsafe_reason(tree(**{f"l{i}": f"/etc/{i}" for i in range(7)}), BUILD)
    assert reason is not None
    assert reason.startswith("the symlinks 'l0' → '/etc/0', 'l1' → '/etc/1'")
    assert "'l4' → '/etc/4' and 2 more lead outside the repository" in reason
