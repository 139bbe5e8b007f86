"""The event history in words: a journalled transition as people and scripts read it.

``GET /api/v1/events``, the status page and ``runner-orchestrator status`` all show a
transition through :func:`event_json`, so "what happened to runner X at 3 am" reads the
same everywhere. The words name the lifecycle step (created, registered, started, busy,
idle, retiring, removed, failed); the journal's ``reason`` says why.
"""

from __future__ import annotations

from typing import Any

from orchestrator.models import RunnerState
from orchestrator.state import Transition

_WORDS = {
    RunnerState.REQUESTED.value: "created",
    RunnerState.REGISTERING.value: "registering",
    RunnerState.STARTING.value: "registered",
    RunnerState.BUSY.value: "busy",
    RunnerState.DRAINING.value: "retiring",
    RunnerState.REMOVED.value: "removed",
    RunnerState.FAILED.value: "failed",
}

#: Every word :func:`event_word` can answer (the OpenAPI enum).
EVENT_WORDS = (
    "created",
    "registering",
    "registered",
    "started",
    "busy",
    "idle",
    "retiring",
    "removed",
    "failed",
)


def event_word(from_state: str | None, to_state: str) -> str:
    """The lifecycle step a transition is: ``idle`` is ``started`` when it comes up."""
    if to_state == RunnerState.IDLE.value:
        return "idle" if from_state == RunnerState.BUSY.value else "started"
    return _WORDS.get(to_state, to_state)


def event_json(event: Transition) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "runner": event.runner_id,
        "pool": event.pool,
        "forge": event.forge,
        "event": event_word(event.from_state, event.to_state),
        "from": event.from_state,
        "to": event.to_state,
        "reason": event.reason,
    }
