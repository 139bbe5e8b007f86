"""Tag/label matching as GitLab and GitHub define it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.labels import (
    PoolMatcher,
    job_platform,
    match_pool,
    platform_from_tags,
    pool_labels,
    why_unmatched,
)
from orchestrator.models import ForgeKind, Job, PoolSpec


def gh_pool(name: str, labels: set[str], platform: str = "linux/amd64") -> PoolSpec:
    return PoolSpec(
        name=name,
        forge="gh",
        forge_kind=ForgeKind.GITHUB,
        labels=frozenset(labels),
        platform=platform,
        run_untagged=False,
        max_runners=5,
        min_idle=0,
        max_idle=None,
        cooldown_s=60,
        ephemeral=True,
    )


def gh_job(*labels: str) -> Job:
    return Job(
        forge="gh",
        id="1",
        scope="o/r",
        tags=frozenset(labels),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


X64 = gh_pool("x64", set())
ARM = gh_pool("arm", set(), platform="linux/arm64")
GPU = gh_pool("gpu", {"gpu"})


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        (("self-hosted",), "x64"),
        (("self-hosted", "linux", "x64"), "x64"),
        (("self-hosted", "Linux", "X64"), "x64"),
        (("self-hosted", "amd64"), "x64"),
        (("self-hosted", "ARM64"), "arm"),
        (("self-hosted", "linux", "aarch64"), "arm"),
        (("self-hosted", "gpu"), "gpu"),
        (("self-hosted", "windows"), None),
        (("ubuntu-latest",), None),
    ],
)
def test_github_labels_and_arch_spellings(labels: tuple[str, ...], want: str | None) -> None:
    chosen = match_pool(gh_job(*labels), [X64, ARM, GPU])
    assert (chosen.name if chosen else None) == want


def test_github_runner_labels_include_self_hosted_os_and_arch() -> None:
    assert pool_labels(GPU, "linux/amd64") == ("self-hosted", "linux", "x64", "gpu")
    assert pool_labels(ARM, "linux/arm64") == ("self-hosted", "linux", "arm64")


@pytest.mark.parametrize(
    ("tags", "want"),
    [
        ({"amd64"}, "linux/amd64"),
        ({"x86_64"}, "linux/amd64"),
        ({"X64"}, "linux/amd64"),
        ({"aarch64"}, "linux/arm64"),
        ({"docker"}, None),
        ({"amd64", "arm64"}, None),
    ],
)
def test_platform_from_tags(tags: set[str], want: str | None) -> None:
    assert platform_from_tags(tags) == want


# --- the planner's fast matcher against the definition -------------------------------------

# Spellings that fold together on GitHub but not on GitLab, arch aliases, a label with a
# stray space: the cases where a precomputed shortcut could disagree with match_pool.
VOCAB = [
    "docker",
    "Docker",
    "gpu",
    " gpu",
    "linux",
    "Linux",
    "self-hosted",
    "amd64",
    "x64",
    "X64",
    "x86_64",
    "arm64",
    "ARM64",
    "aarch64",
    "windows",
]


@st.composite
def pool_lists(draw):  # type: ignore[no-untyped-def]
    pools = []
    for i in range(draw(st.integers(0, 6))):
        pools.append(
            PoolSpec(
                name=f"p{i}",
                forge=draw(st.sampled_from(["gl", "gh"])),
                forge_kind=draw(st.sampled_from(list(ForgeKind))),
                labels=frozenset(draw(st.lists(st.sampled_from(VOCAB), max_size=4))),
                platform=draw(st.sampled_from(["linux/amd64", "linux/arm64", "auto"])),
                run_untagged=draw(st.booleans()),
                max_runners=5,
                min_idle=0,
                max_idle=None,
                cooldown_s=60,
                ephemeral=True,
            )
        )
    return pools


def any_job(forge: str, tags: list[str]) -> Job:
    return Job(
        forge=forge, id="1", scope="s", tags=frozenset(tags), created_at=datetime(2026, 1, 1)
    )


@settings(max_examples=500, deadline=None)
@given(
    pool_lists(),
    st.lists(
        st.tuples(st.sampled_from(["gl", "gh", "other"]), st.lists(st.sampled_from(VOCAB))),
        max_size=12,
    ),
)
def test_pool_matcher_agrees_with_match_pool(pools, jobs) -> None:  # type: ignore[no-untyped-def]
    """Fault guarded: a precomputed/memoised matcher that picks another pool, another
    platform or another explanation than the definition for some tag set."""
    matcher = PoolMatcher(pools)
    for forge, tags in jobs * 2:  # twice: the second answer comes from the memo
        job = any_job(forge, tags)
        got = matcher.match(job)
        want = match_pool(job, pools)
        assert got.pool is want
        if want is None:
            assert got.why == why_unmatched(job, pools)
        else:
            assert got.platform == job_platform(job, want)
