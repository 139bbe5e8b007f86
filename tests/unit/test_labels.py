"""Tag/label matching as GitLab and GitHub define it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.labels import match_pool, platform_from_tags, pool_labels
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
