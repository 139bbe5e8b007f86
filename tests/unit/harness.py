"""The reconciler over the in-memory fakes, as the unit scenarios set it up."""

from __future__ import annotations

from typing import Any

from orchestrator.config import Settings
from orchestrator.metrics import Metrics
from orchestrator.models import RunnerState
from orchestrator.reconciler import Reconciler
from orchestrator.state import Journal
from tests.conftest import Clock
from tests.fakes import FakeForge, FakeRuntime, FakeWorld

POOLS = [
    {"name": "amd64", "labels": ["docker", "amd64"], "max_runners": 3, "cooldown_s": 60},
    {
        "name": "arm64",
        "labels": ["docker", "arm64"],
        "platform": "linux/arm64",
        "max_runners": 3,
        "cooldown_s": 60,
    },
]


class Harness:
    """One reconciler over the fakes: one forge (``gitlab`` or ``github``), a fake
    runtime sharing its world, a journal, and the count of nudges it asked for."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        world: FakeWorld | None = None,
        journal: Journal | None = None,
        forge: str = "gitlab",
    ) -> None:
        self.world = world or FakeWorld()
        self.clock = clock
        self.settings = settings
        self.forge = FakeForge(self.world, name=forge, kind=forge)
        self.runtime = FakeRuntime(self.world)
        self.journal = journal or Journal(settings.journal_path)
        self.metrics = Metrics()
        self.nudges = 0
        self.reconciler = Reconciler(
            settings=settings,
            journal=self.journal,
            providers={forge: self.forge},
            runtime=self.runtime,
            metrics=self.metrics,
            instance_id="test",
            clock=clock,
            nudge=self._nudge,
        )
        self.runtime.on_event = self.reconciler.on_container_event

    def _nudge(self) -> None:
        self.nudges += 1

    def runners(self, state: RunnerState | None = None) -> list[Any]:
        return [r for r in self.journal.active() if state is None or r.state is state]


#: ``make_settings`` arguments for one GitHub forge (no GitLab) and one pool.
GITHUB_ONLY: dict[str, Any] = {
    "gitlab_url": None,
    "gitlab_token": None,
    "gitlab_projects": [],
    "github_token": "ghp_testtoken0123456789abcdef",
    "github_repo": ["o/r"],
    "pools": [{"name": "gh", "labels": ["docker"], "cooldown_s": 60}],
}
#: ``make_settings`` arguments for a GitLab and a GitHub forge, a pool each.
TWO_FORGES: dict[str, Any] = {
    "github_token": "ghp_testtoken0123456789abcdef",
    "github_repo": ["o/r"],
    "pools": [
        {"name": "gl", "forge": "gitlab", "labels": ["docker"]},
        {"name": "gh", "forge": "github", "labels": ["docker"]},
    ],
    "poll_interval": 15,
}
