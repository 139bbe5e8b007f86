"""Which pool serves which job: tag/label matching as GitLab and GitHub define it. Pure.

GitLab: a runner takes a job when the job's tags are a subset of the runner's tags; a
job with no tags goes only to runners that ``run_untagged``. Tags compare exactly.

GitHub: a self-hosted runner always carries ``self-hosted`` plus its OS and architecture
labels; labels compare case-insensitively, and the architecture has several spellings
(``x64``/``X64``/``amd64``/``x86_64``, ``arm64``/``ARM64``/``aarch64``) that we fold
to one.

The *most specific* pool wins: among pools whose labels cover the job's, the one with
the fewest labels the job did not ask for; ties go to the pool listed first in config.

:func:`match_pool` is the definition, written to be read: it recomputes every pool's
labels for the job it is given. The planner matches thousands of jobs against the same
pools each reconcile, so it uses :class:`PoolMatcher`, which folds each pool's labels
once and answers each distinct (forge, tag set) once; a property test holds the two equal.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True, slots=True)
class Match:
    """Where a job goes: its pool and the platform its runner runs on, or why nowhere."""

    pool: PoolSpec | None
    platform: str = ""
    why: str = ""  # set when ``pool`` is None: the operator-facing sentence


@dataclasses.dataclass(frozen=True, slots=True)
class _Offer:
    """One (pool, platform) a job may land on, with its labels compared the forge's way."""

    order: int
    pool: PoolSpec
    platform: str
    have: frozenset[str]  # GitHub: folded labels; GitLab: tags as registered
    github: bool


class PoolMatcher:
    """:func:`match_pool` for many jobs against one pool list.

    Built once per plan: every pool's registered labels are computed and folded here,
    not once per job, and the answer for a (forge, tag set) is remembered because the
    jobs of a reconcile share few distinct tag sets. The memo lives as long as the
    matcher, i.e. one plan, so it is bounded by that plan's jobs.
    """

    def __init__(self, pools: Sequence[PoolSpec]) -> None:
        self._pools = tuple(pools)
        self._offers: dict[str, list[_Offer]] = {}
        for order, pool in enumerate(self._pools):
            github = pool.forge_kind is ForgeKind.GITHUB
            for platform in _platforms(pool):
                offered = pool_labels(pool, platform)
                have = frozenset(_github_fold(t) for t in offered) if github else frozenset(offered)
                offer = _Offer(order, pool, platform, have, github)
                self._offers.setdefault(pool.forge, []).append(offer)
        self._memo: dict[str, dict[frozenset[str], Match]] = {}

    def match(self, job: Job) -> Match:
        """The job's pool and runner platform, exactly as :func:`match_pool` and
        :func:`job_platform` would say, or the :func:`why_unmatched` sentence."""
        per_forge = self._memo.get(job.forge)
        if per_forge is None:
            per_forge = self._memo[job.forge] = {}
        found = per_forge.get(job.tags)
        if found is None:
            found = per_forge[job.tags] = self._resolve(job)
        return found

    def _resolve(self, job: Job) -> Match:
        wanted = platform_from_tags(job.tags)
        folded = frozenset(_github_fold(t) for t in job.tags)
        best: tuple[int, int] | None = None
        chosen: PoolSpec | None = None
        for offer in self._offers.get(job.forge, ()):
            if wanted is not None and offer.platform != wanted:
                continue
            if offer.github:
                want = folded
            else:
                if not job.tags and not offer.pool.run_untagged:
                    continue
                want = job.tags
            if not want <= offer.have:
                continue
            score = (len(offer.have) - len(want), offer.order)
            if best is None or score < best:
                best, chosen = score, offer.pool
        if chosen is None:
            return Match(None, why=why_unmatched(job, self._pools))
        return Match(chosen, job_platform(job, chosen))


def why_unmatched(job: Job, pools: Sequence[PoolSpec]) -> str:
    """A sentence for an operator: why no pool serves ``job``."""
    mine = [p for p in pools if p.forge == job.forge]
    if not mine:
        return f"no pool is configured for forge {job.forge!r}"
    if not job.tags and all(p.forge_kind is ForgeKind.GITLAB and not p.run_untagged for p in mine):
        return "job has no tags and no pool has run_untagged"
    tags = ", ".join(sorted(job.tags)) or "(none)"
    return f"no pool's labels cover the job's tags [{tags}]"
