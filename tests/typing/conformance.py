"""mypy-only conformance (STYLE §5.2): every implementer of each Protocol, checked statically.

``mypy`` (pyproject ``[tool.mypy] files``) checks this module; a drift between an adapter,
a fake or the dry-run runtime and its Protocol is a type error here. Nothing runs it.
To add an implementation (a SwarmRuntime, a third forge), add one line below.
"""

from __future__ import annotations

from orchestrator.config import DockerHostConfig
from orchestrator.planlib import _NoRuntime
from orchestrator.runtime import ContainerRuntime
from orchestrator.runtime.composite import CompositeRuntime
from orchestrator.runtime.docker_engine import DockerRuntime
from orchestrator.runtime.swarm import SwarmRuntime
from providers.base import GitHubOptions, GitLabOptions, Provider
from providers.github import GitHubProvider
from providers.gitlab import GitLabProvider
from tests.fakes import FakeForge, FakeRuntime, FakeWorld


def providers(gitlab: GitLabOptions, github: GitHubOptions, world: FakeWorld) -> list[Provider]:
    """Both forge adapters and the fake satisfy :class:`Provider`."""
    return [GitLabProvider(gitlab), GitHubProvider(github), FakeForge(world)]


def runtimes(world: FakeWorld) -> list[ContainerRuntime]:
    """The Docker and Swarm runtimes, their router, the fake and the dry-run (``plan``)
    runtime satisfy :class:`ContainerRuntime`."""
    docker = DockerRuntime("id", [DockerHostConfig(name="local")])
    swarm = SwarmRuntime("id", [DockerHostConfig(name="cluster", mode="swarm")])
    return [
        docker,
        swarm,
        CompositeRuntime("id", [docker, swarm]),
        FakeRuntime(world),
        _NoRuntime(),
    ]
