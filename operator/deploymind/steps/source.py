"""Step `source` — owns condition SourceReady.

Resolves `source.ref` to a commit with `git ls-remote` and fetches that commit into a tarball whose sha256 is the tree
digest (or takes `image` as it is), then names the desired revision `<commit[:12]>-<config[:8]>`. The repository URL
must pass the operator's rules first, and a tree with a symlink (or a build path) leading out of it is refused here,
before anything of it reaches a host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import posixpath
from pathlib import Path

from deploymind.api import reasons
from deploymind.api.conditions import F, T
from deploymind.api.status import ConditionType
from deploymind.steps import gitfetch, sourcetree
from deploymind.steps.context import Desired, StepContext
from deploymind.steps.errors import Stalled, Waiting
from deploymind.steps.revision import built_image, config_hash, image_base, revision_id

NEEDS_USER = {reasons.REF_NOT_FOUND, reasons.AUTHENTICATION_FAILED, reasons.INVALID_SPEC, reasons.REPOSITORY_NOT_ALLOWED}


async def source(ctx: StepContext) -> None:
    config = config_hash(ctx.spec, ctx.env, ctx.revision_key)
    if ctx.spec.image is not None:
        ctx.desired = Desired(revision=revision_id(image_base(ctx.spec.image), config), image=ctx.spec.image,
                              digest=ctx.spec.image.split("@", 1)[1] if "@" in ctx.spec.image else None, config=config)
        ctx.conditions.set(ConditionType.SOURCE_READY, T, reasons.RESOLVED, f"prebuilt image {ctx.spec.image}")
        return
    assert ctx.spec.source is not None  # the model guarantees exactly one of source and image
    src = ctx.spec.source
    url = src.repo  # gitfetch normalizes it (owner/name → GitHub) and refuses what is no repository
    policy = _policy(ctx)
    try:
        commit = await gitfetch.resolve_ref(url, src.ref, token=ctx.token, policy=policy,
                                            timeout=ctx.settings.git_timeout_seconds)
        tarball = await _fetch(ctx, commit, policy)
    except gitfetch.GitFetchError as e:
        ctx.conditions.set(ConditionType.SOURCE_READY, F, e.reason, e.message)
        if e.reason in NEEDS_USER:
            raise Stalled(e.reason, e.message) from None
        raise Waiting(e.reason, e.message) from None
    unsafe = await asyncio.to_thread(_unsafe_tree, ctx, tarball.path)
    if unsafe is not None:
        message = f"commit {commit[:12]} cannot be built: {unsafe}"
        ctx.conditions.set(ConditionType.SOURCE_READY, F, reasons.UNSAFE_SOURCE, message)
        raise Stalled(reasons.UNSAFE_SOURCE, message)
    revision = revision_id(commit, config)
    build = ctx.spec.build
    build_key = hashlib.sha256("|".join([tarball.digest, build.dockerfile if build else "Dockerfile",
                                         build.context if build else "."]).encode()).hexdigest()
    ctx.desired = Desired(revision=revision, image=built_image(ctx.uid, revision), commit=commit,
                          digest=tarball.digest, tarball=tarball.path, config=config, build_key=build_key)
    ctx.conditions.set(ConditionType.SOURCE_READY, T, reasons.RESOLVED,
                       f"{src.ref} is {commit[:12]} (tree sha256:{tarball.digest[:12]})")


async def fetch_revision(ctx: StepContext, target: Desired) -> Desired:
    """`target` (a revision of the spec's repository this object ran) with the tarball of its commit fetched again:
    for a host that lost its image. The tree must be the one the revision was built from (its digest), so it is the
    tree this step checked then. Raises Stalled or Waiting as `source` does; touches no condition."""
    assert ctx.spec.source is not None and target.commit is not None
    if target.digest is None:
        raise Stalled(reasons.UNSAFE_SOURCE, f"revision {target.revision} has no recorded tree digest: it cannot be "
                                             "built again as the tree it was built from")
    try:
        tarball = await _fetch(ctx, target.commit, _policy(ctx))
    except gitfetch.GitFetchError as e:
        if e.reason in NEEDS_USER:
            raise Stalled(e.reason, e.message) from None
        raise Waiting(e.reason, e.message) from None
    if tarball.digest != target.digest:
        raise Stalled(reasons.UNSAFE_SOURCE, f"commit {target.commit[:12]} now gives tree sha256:{tarball.digest[:12]}, "
                                             f"not sha256:{target.digest[:12]} that {target.revision} was built from")
    return dataclasses.replace(target, tarball=tarball.path)


def _policy(ctx: StepContext) -> gitfetch.Policy:
    return gitfetch.Policy(allow_file=ctx.settings.allow_file_repos, known_hosts=ctx.settings.git_known_hosts)


async def _fetch(ctx: StepContext, commit: str, policy: gitfetch.Policy) -> gitfetch.Tarball:
    assert ctx.spec.source is not None
    return await gitfetch.fetch_tarball(ctx.spec.source.repo, commit, token=ctx.token, policy=policy,
                                        cache_dir=ctx.settings.source_cache, timeout=ctx.settings.git_timeout_seconds,
                                        cache_max_bytes=ctx.settings.source_cache_max_mb * 1024 * 1024)


def _unsafe_tree(ctx: StepContext, tarball: Path) -> str | None:
    context = ctx.spec.build.context if ctx.spec.build else "."
    dockerfile = ctx.spec.build.dockerfile if ctx.spec.build else "Dockerfile"
    build_paths = {"spec.build.context": context,
                   "spec.build.dockerfile": posixpath.normpath(posixpath.join(context, dockerfile))}
    return sourcetree.unsafe_reason(sourcetree.read_entries(tarball), build_paths)
