"""What the providers know about their own health reaches the operator, and each bound has
one setting for both layers.

Before: a refused project (403) or a capped backlog was only in ``provider.health()``;
/status, the page and /metrics never showed it, and the provider's own call deadline
(60 s) and wait clamp (900 s) were separate defaults from ``FORGE_CALL_TIMEOUT`` (30 s)
and ``FORGE_RETRY_AFTER_MAX``, so raising or lowering one setting left the other layer
at its own bound.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from html.parser import HTMLParser

from prometheus_client import generate_latest

from orchestrator import page
from orchestrator.app import build_providers
from orchestrator.config import Settings
from orchestrator.forges import ForgeLimits, ForgeTracker, provider_deadline
from orchestrator.metrics import Metrics
from orchestrator.snapshot import SCOPES_SHOWN, Snapshot
from providers.base import ProviderHealth, ignore_request
from tests.conftest import Clock
from tests.fakes import FakeForge, FakeWorld

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class RefusingForge(FakeForge):
    """A forge where many projects refuse the token and one backlog is capped."""

    def health(self) -> ProviderHealth:
        return ProviderHealth(
            scope_errors={f"group/p{i}": "403 Forbidden" for i in range(500)},
            jobs_capped={"group/huge": 1000},
        )


def _tracker(clock: Clock) -> ForgeTracker:
    forge = RefusingForge(FakeWorld(), name="gitlab", kind="gitlab")
    return ForgeTracker(
        {"gitlab": forge},
        limits=ForgeLimits(poll_interval_s=15),
        metrics=Metrics(),
        clock=clock,
    )


def test_refused_and_capped_scopes_are_in_status_bounded(clock: Clock) -> None:
    (status,) = _tracker(clock).statuses()
    snap = Snapshot(instance_id="t", forges=(status,))
    (forge,) = snap.status_json()["forges"]  # type: ignore[index]
    assert forge["scope_error_count"] == 500  # every refusal counted ...
    assert len(forge["scope_errors"]) == SCOPES_SHOWN  # ... a bounded few named
    assert forge["scope_errors"]["group/p0"] == "403 Forbidden"
    assert forge["jobs_capped"] == {"group/huge": 1000}
    assert forge["jobs_capped_count"] == 1


def test_metrics_count_refused_and_capped_scopes_without_naming_them(clock: Clock) -> None:
    (status,) = _tracker(clock).statuses()
    metrics = Metrics(snapshot=lambda: Snapshot(instance_id="t", forges=(status,)))
    text = generate_latest(metrics.registry).decode()
    assert 'runner_orchestrator_forge_scope_errors{forge="gitlab"} 500.0' in text
    assert 'runner_orchestrator_forge_jobs_capped{forge="gitlab"} 1.0' in text
    assert "group/p0" not in text  # no per-project label values (unbounded cardinality)


class Text(HTMLParser):
    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.feed(markup)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_page_names_refused_and_capped_scopes(clock: Clock) -> None:
    (status,) = _tracker(clock).statuses()
    snap = Snapshot(instance_id="t", forges=(status,))
    text = "".join(Text(page.status_page(snap, [], NOW)).text)
    assert "500 skipped (refused)" in text and "group/p0: 403 Forbidden" in text
    assert "and 480 more" in text
    assert "backlog capped: group/huge (1,000 read)" in text


async def test_one_setting_feeds_the_tracker_and_the_provider(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        github_token="ghp_testtoken0123456789abcdef",
        github_repo=["o/r"],
        forge_call_timeout=12,
        forge_retry_after_max=120,
        max_jobs_per_scope=50,
        gitlab_graphql=False,
    )
    limits = ForgeLimits.from_settings(settings)
    providers = build_providers(settings, "test", ignore_request)
    try:
        for provider in providers.values():
            options = provider._options  # type: ignore[attr-defined]
            assert options.call_deadline_s == provider_deadline(12) < limits.call_timeout_s
            assert options.max_retry_wait_s == limits.wait_max_s == 120
            assert options.min_retry_wait_s == limits.wait_min_s
            assert options.max_jobs_per_scope == 50
        assert providers["gitlab"]._options.graphql_poll is False  # type: ignore[attr-defined]
    finally:
        for provider in providers.values():
            await provider.aclose()


def test_the_provider_deadline_fires_just_before_the_trackers() -> None:
    for timeout in (0.5, 5.0, 30.0, 600.0):
        assert 0 < provider_deadline(timeout) < timeout
        assert provider_deadline(timeout) >= min(timeout - 2.0, timeout * 0.9)
