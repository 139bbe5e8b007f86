"""Which pool serves which job: tag/label matching as GitLab and GitHub define it. Pure.

GitLab: a runner takes a job when the job's tags are a subset of the runner's tags; a
job with no tags goes only to runners that ``run_untagged``. Tags compare exactly.

GitHub: a self-hosted runner always carries ``self-hosted`` plus its OS and architecture
labels; labels compare case-insensitively, and the architecture has several spellings
(``x64``/``X64``/``amd64``/``x86_64``, ``arm64``/``ARM64``/``aarch64``) that we fold
to one.

The *most specific* pool wins: among pools whose labels cover the job's, the one with
the fewest labels the job did not ask for; ties go to the pool listed first in config.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from orchestrator.models import DEFAULT_PLATFORM, ForgeKind, Job, PoolSpec

AMD64 = "linux/amd64"
ARM64 = "linux/arm64"
AUTO = "auto"

_ARCH_ALIASES = {
    "amd64": AMD64,
    "x86_64": AMD64,
    "x64": AMD64,
    "x86-64": AMD64,
    "arm64": ARM64,
    "aarch64": ARM64,
}
#: GitLab tags a runner of each platform is registered with in an ``auto`` pool.
GITLAB_ARCH_TAGS = {AMD64: ("amd64", "x86_64", "x64"), ARM64: ("arm64", "aarch64")}
#: GitHub's own label for each platform.
GITHUB_ARCH_LABEL = {AMD64: "x64", ARM64: "arm64"}


def platform_from_tags(tags: Iterable[str]) -> str | None:
    """The platform a job's tags ask for, or None when they name no architecture."""
    found = {_ARCH_ALIASES[t.lower()] for t in tags if t.lower() in _ARCH_ALIASES}
    if len(found) == 1:
        return found.pop()
    return None


def _github_fold(label: str) -> str:
    low = label.strip().lower()
    if low in _ARCH_ALIASES:
        return GITHUB_ARCH_LABEL[_ARCH_ALIASES[low]]
    return low


def _platforms(pool: PoolSpec) -> tuple[str, ...]:
    return (AMD64, ARM64) if pool.platform == AUTO else (pool.platform,)


def pool_labels(pool: PoolSpec, platform: str) -> tuple[str, ...]:
    """The labels/tags a runner of ``pool`` on ``platform`` registers with."""
    labels = list(dict.fromkeys(pool.labels))
    if pool.forge_kind is ForgeKind.GITHUB:
        extra = ["self-hosted", "linux", GITHUB_ARCH_LABEL[platform]]
        folded = {_github_fold(x) for x in labels}
        return tuple([x for x in extra if x not in folded] + labels)
    if pool.platform == AUTO:
        labels += [t for t in GITLAB_ARCH_TAGS[platform] if t not in labels]
    return tuple(labels)


def _covered(job: Job, pool: PoolSpec, platform: str) -> int | None:
    """How many labels ``pool`` has beyond the job's, or None when it cannot serve it."""
    offered = pool_labels(pool, platform)
    if pool.forge_kind is ForgeKind.GITHUB:
        want = {_github_fold(t) for t in job.tags}
        have = {_github_fold(t) for t in offered}
    else:
        if not job.tags and not pool.run_untagged:
            return None
        want = set(job.tags)
        have = set(offered)
    if not want <= have:
        return None
    return len(have - want)


def job_platform(job: Job, pool: PoolSpec) -> str:
    """The platform a runner for ``job`` in ``pool`` runs on."""
    if pool.platform != AUTO:
        return pool.platform
    return platform_from_tags(job.tags) or DEFAULT_PLATFORM


def match_pool(job: Job, pools: Sequence[PoolSpec]) -> PoolSpec | None:
    """The most specific pool of the job's forge that can serve it, or None."""
    best: tuple[int, int] | None = None
    chosen: PoolSpec | None = None
    for order, pool in enumerate(pools):
        if pool.forge != job.forge:
            continue
        wanted = platform_from_tags(job.tags)
        candidates = [p for p in _platforms(pool) if wanted is None or p == wanted]
        for platform in candidates:
            extra = _covered(job, pool, platform)
            if extra is None:
                continue
            score = (extra, order)
            if best is None or score < best:
                best, chosen = score, pool
    return chosen


def why_unmatched(job: Job, pools: Sequence[PoolSpec]) -> str:
    """A sentence for an operator: why no pool serves ``job``."""
    mine = [p for p in pools if p.forge == job.forge]
    if not mine:
        return f"no pool is configured for forge {job.forge!r}"
    if not job.tags and all(p.forge_kind is ForgeKind.GITLAB and not p.run_untagged for p in mine):
        return "job has no tags and no pool has run_untagged"
    tags = ", ".join(sorted(job.tags)) or "(none)"
    return f"no pool's labels cover the job's tags [{tags}]"
