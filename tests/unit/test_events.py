"""The event history: what happened to a runner, from the journal's transitions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orchestrator.events import event_json
from orchestrator.metrics import Metrics
from orchestrator.models import RunnerState
from orchestrator.state import Journal
from tests.conftest import Clock


def _life(journal: Journal, clock: Clock, runner_id: str, pool: str) -> None:
    journal.create(
        runner_id=runner_id,
        name=f"r-{runner_id}",
        pool=pool,
        forge="gitlab",
        platform="",
        now=clock(),
    )
    for state, reason in [
        (RunnerState.REGISTERING, "register"),
        (RunnerState.STARTING, "registered"),
        (RunnerState.IDLE, "started"),
        (RunnerState.BUSY, "job gitlab:7"),
        (RunnerState.IDLE, "job done"),
        (RunnerState.DRAINING, "cooldown"),
        (RunnerState.REMOVED, "cooldown"),
    ]:
        clock.advance(1)
        journal.transition(runner_id, state, now=clock(), reason=reason)


def test_what_happened_to_runner_x_reads_as_words_newest_first(
    tmp_path: Path, clock: Clock
) -> None:
    journal = Journal(tmp_path / "j.db")
    _life(journal, clock, "a1", "amd64")
    _life(journal, clock, "b2", "arm64")
    words = [event_json(e)["event"] for e in journal.events(runner_id="a1")]
    assert words == [
        "removed",
        "retiring",
        "idle",
        "busy",
        "started",
        "registered",
        "registering",
        "created",
    ]
    (busy,) = [e for e in journal.events(runner_id="a1") if e.to_state == "busy"]
    assert busy.reason == "job gitlab:7" and busy.pool == "amd64" and busy.forge == "gitlab"
    assert {e.runner_id for e in journal.events(pool="arm64")} == {"b2"}
    newest = journal.events(limit=3)
    assert [e.runner_id for e in newest] == ["b2"] * 3
    page2 = journal.events(limit=3, before=newest[-1].seq)
    assert page2[0].seq == newest[-1].seq - 1


def test_history_is_kept_for_the_journal_retention_then_pruned(
    tmp_path: Path, clock: Clock
) -> None:
    journal = Journal(tmp_path / "j.db")
    _life(journal, clock, "old", "amd64")
    clock.advance(3600)
    _life(journal, clock, "new", "amd64")
    journal.prune(clock() - timedelta(minutes=30))
    assert {e.runner_id for e in journal.events()} == {"new"}


def test_every_transition_counts_in_prometheus(tmp_path: Path, clock: Clock) -> None:
    journal = Journal(tmp_path / "j.db")
    metrics = Metrics()
    journal.on_transition(metrics.transition)
    _life(journal, clock, "a1", "amd64")
    text = metrics.exposition().decode()
    line = (
        "runner_orchestrator_runner_transitions_total"
        '{from_state="idle",pool="amd64",to_state="busy"} 1.0'
    )
    assert line in text
    assert 'from_state="",pool="amd64",to_state="requested"} 1.0' in text
    # a "transition" to the state it is already in only updates fields: not an event
    journal2 = Journal(tmp_path / "k.db")
    journal2.on_transition(metrics.transition)
    journal2.create(runner_id="z", name="z", pool="p", forge="f", platform="", now=clock())
    journal2.transition("z", RunnerState.REQUESTED, now=clock(), error="x")
    assert len(journal2.events(runner_id="z")) == 1
