"""The status page shows what a person asks for, and no forge string can become markup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from orchestrator import page, runnerpage
from orchestrator.markup import CSP
from orchestrator.models import Job, Runner, RunnerState, WaitingJob, WaitReason
from orchestrator.snapshot import ForgeStatus, PoolStatus, Snapshot
from orchestrator.state import Transition

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EVIL_NAME = "<script>alert(1)</script>"
EVIL_TAGS = frozenset({'he said "hi"', "it's", "<img src=x onerror=alert(2)>"})


class Page(HTMLParser):
    """What a browser would build: elements and text (to check escaping round-trips)."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def _snapshot(waiting: int = 1) -> Snapshot:
    job = Job(
        forge="gitlab",
        id="77",
        scope='group/"app"',
        tags=EVIL_TAGS,
        created_at=NOW - timedelta(minutes=3),
        name=EVIL_NAME,
    )
    busy = Runner(
        id="r1",
        name="ro-test-r1",
        pool="amd64",
        forge="gitlab",
        state=RunnerState.BUSY,
        since=NOW - timedelta(seconds=30),
        created_at=NOW - timedelta(minutes=2),
        host="local",
        current_job="gitlab:76",
        scope="group/<i>app</i>",
    )
    return Snapshot(
        instance_id="test",
        finished_at=NOW - timedelta(seconds=2),
        result="degraded",
        reconciles=3,
        pools=(
            PoolStatus(
                name="amd64",
                forge="gitlab",
                platform="linux/amd64",
                labels=("docker", "<b>bold</b>"),
                max_runners=1,
                min_idle=0,
                pending_jobs=1,
                runners={"busy": 1},
                active=1,
            ),
        ),
        forges=(
            ForgeStatus(
                name="gitlab",
                kind="gitlab",
                paused=True,
                error="HTTP 503 <html>bad gateway</html>",
                last_ok_at=NOW - timedelta(minutes=1),
                pending_jobs=1,
                poll_interval_s=15,
                rate_limit_remaining=4321,
                retry_at=NOW + timedelta(seconds=40),
            ),
        ),
        waiting=tuple(
            WaitingJob(job=job, pool="amd64", reason=WaitReason.POOL_AT_MAX) for _ in range(waiting)
        ),
        runners=(busy,),
    )


def _event(to: str, frm: str | None, reason: str) -> Transition:
    return Transition(1, "r1", "amd64", "gitlab", frm, to, NOW - timedelta(seconds=5), reason)


def test_a_job_named_like_a_script_is_text_not_markup() -> None:
    markup = page.status_page(_snapshot(), [_event("busy", "idle", "job <i>x</i>")], NOW)
    parsed = Page(markup)
    scripts = [t for t, _ in parsed.tags if t == "script"]
    assert len(scripts) == 1, "only the page's own script"
    assert not [t for t, _ in parsed.tags if t in {"img", "i"}]
    text = parsed.all_text
    assert EVIL_NAME in text  # shown to the person, as text
    for evil in EVIL_TAGS:
        assert evil in text
    assert "HTTP 503 <html>bad gateway</html>" in text
    assert "job <i>x</i>" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert "&quot;hi&quot;" in markup


def test_the_page_says_what_a_person_asks() -> None:
    text = Page(
        page.status_page(_snapshot(), [_event("busy", "idle", "job gitlab:76")], NOW)
    ).all_text
    assert "pool amd64 is at its maximum number of runners" in text  # why the job waits
    assert "paused: HTTP 503" in text and "4,321" in text  # forge health, rate limit left
    assert "1 / 1" in text  # pool active / max
    assert "ro-test-r1" in text and "busy" in text and "gitlab:76" in text and "local" in text
    assert "Latest events" in text and "job gitlab:76" in text


def test_a_huge_queue_renders_a_bounded_page() -> None:
    markup = page.status_live(_snapshot(waiting=20_000), [], NOW)
    assert markup.count("<tr>") < page.MAX_ROWS + 20
    assert "19,900 more jobs" in Page(markup).all_text


@pytest.mark.parametrize("reason", list(WaitReason))
def test_every_wait_reason_has_words(reason: WaitReason) -> None:
    job = Job("gitlab", "1", "p", frozenset(), NOW)
    words = page.reason_words(WaitingJob(job, "amd64", reason, detail="host pi down"))
    assert reason.value not in words and len(words) > 20


def test_the_runner_page_shows_logs_only_when_given_them() -> None:
    runner = _snapshot().runners[0]
    history = [_event("busy", "idle", "job gitlab:76"), _event("idle", "starting", "started")]
    without = runnerpage.runner_page(runner, history, NOW, logs=None, management=True)
    assert 'id="logs-form"' in without and "secret log line" not in without
    text = Page(without).all_text
    assert "busy" in text and "started" in text
    assert "group/&lt;i&gt;app&lt;/i&gt;" in without  # where it is registered, escaped
    with_logs = runnerpage.runner_page(
        runner, history, NOW, logs="secret log line <b>", management=True
    )
    assert "secret log line &lt;b&gt;" in with_logs
    disabled = runnerpage.runner_page(runner, history, NOW, logs=None, management=False)
    assert "MANAGEMENT_ENABLED" in disabled and 'id="logs-form"' not in disabled


def test_the_csp_allows_exactly_the_inline_script_and_style() -> None:
    import base64
    import hashlib
    import re

    markup = page.status_page(_snapshot(), [], NOW)
    (script,) = re.findall(r"<script>(.*?)</script>", markup, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", markup, re.S)
    for body in (script, style):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in CSP
    assert "unsafe-inline" not in CSP
