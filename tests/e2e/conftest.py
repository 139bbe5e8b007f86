"""E2E scenarios need a Docker Engine and the local test runner image."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import GH_TOKEN, ROOT, SIM_TOKEN, TEST_IMAGE, Sim, cleanup_instance


def _engine() -> bool:
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=15, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def test_image() -> str:
    if not _engine():
        pytest.skip("NO DOCKER ENGINE: e2e scenarios did not run")
    have = (
        subprocess.run(
            ["docker", "image", "inspect", TEST_IMAGE], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not have:
        subprocess.run([str(ROOT / "scripts" / "build-test-image.sh")], check=True, timeout=300)
    return TEST_IMAGE


@pytest.fixture
def instance(test_image: str) -> Iterator[str]:
    name = "e2e" + secrets.token_hex(3)
    yield name
    cleanup_instance(name)


@pytest.fixture
def gitlab_sim() -> Iterator[Sim]:
    """A GitLab simulator process for one test."""
    sim = Sim("gitlab", SIM_TOKEN)
    yield sim
    sim.stop()


@pytest.fixture
def github_sim() -> Iterator[Sim]:
    """A GitHub simulator process for one test."""
    sim = Sim("github", GH_TOKEN)
    yield sim
    sim.stop()
