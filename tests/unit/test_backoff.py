"""The backoff books on their own: capped waits, probation, proof, retries then the sweep."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.backoff import RetryBook, SpawnBackoff
from orchestrator.models import CreateRequest, Runner, RunnerState
from tests.conftest import Clock


def runner(pool: str, created: Clock) -> Runner:
    return Runner("r1", "n", pool, "gitlab", RunnerState.IDLE, created.now, created.now)


def test_spawn_backoff_doubles_to_a_cap_and_ends_only_on_proof(clock: Clock) -> None:
    book = SpawnBackoff(clock, base_s=2, max_s=60)
    waits = [book.failed("p", "exited 1") for _ in range(8)]
    assert waits == [2, 4, 8, 16, 32, 60, 60, 60]
    assert "exited 1" in book.unavailable("p")
    assert book.unavailable("other") == ""
    clock.advance(61)
    assert book.unavailable("p") == "" and book.on_probation("p") is not None
    book.proven("p", clock.now - timedelta(days=1))  # a runner older than the streak: no proof
    assert book.streak("p") is not None
    book.proven("p", clock.now)
    assert book.streak("p") is None and book.on_probation("p") is None


def test_probation_lets_one_probe_through_per_pool(clock: Clock) -> None:
    book = SpawnBackoff(clock)
    book.failed("p", "x")
    clock.advance(10)
    creates = [CreateRequest("p", "linux/amd64", 3), CreateRequest("p", "linux/arm64", 2)]
    creates.append(CreateRequest("q", "linux/amd64", 4))
    limited = book.limit_probes(creates, [])
    assert [(c.pool, c.count) for c in limited] == [("p", 1), ("q", 4)]
    # While that probe has not proved itself, no second one.
    assert [(c.pool, c.count) for c in book.limit_probes(creates, [runner("p", clock)])] == [
        ("q", 4)
    ]


def test_retries_back_off_then_are_left_to_the_sweep(clock: Clock) -> None:
    book = RetryBook(clock, base_s=10, max_s=40, attempts=4)
    assert book.due("r")
    nexts = []
    for _ in range(4):
        entry = book.failed("r", "422 busy")
        nexts.append(None if entry.next_at is None else (entry.next_at - clock.now).seconds)
    assert nexts == [10, 20, 40, None]
    clock.advance(3600)
    assert not book.due("r") and book.due("r", sweep=True)
    book.done("r")
    assert book.due("r") and len(book) == 0
