"""Busy/idle sync: what the forges say our runners are doing, written to the journal.

Asked only for runners whose view is older than ~one poll interval (and right before a
retirement, for the one runner concerned), batched per forge, skipped for paused forges,
each forge call under the tracker's deadline. A runner seen taking a job proves its pool
healthy (see :class:`orchestrator.backoff.SpawnBackoff`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from orchestrator.forges import ForgeTracker
from orchestrator.models import Runner, RunnerState
from orchestrator.state import Journal, RunnerFields
from providers.base import RunnerActivity, RunnerRef
from providers.errors import ProviderAuthError, ProviderError

log = structlog.get_logger("orchestrator.activity")

_NEVER = datetime.min.replace(tzinfo=UTC)


class ActivitySync:
    """Owns the per-runner "last looked at" times and the learnt forge ids of runners
    that register themselves; both are forgotten when the runner is removed."""

    def __init__(
        self,
        *,
        journal: Journal,
        forges: ForgeTracker,
        clock: Callable[[], datetime],
        on_job_taken: Callable[[Runner], None] = lambda _r: None,
    ) -> None:
        self.journal = journal
        self.forges = forges
        self.clock = clock
        self.on_job_taken = on_job_taken
        self._looked_at: dict[str, datetime] = {}
        self._name_ids: dict[str, str] = {}

    def forge_ref(self, runner: Runner) -> RunnerRef:
        """How the provider finds this runner: its forge id, else its name (a runner that
        registers itself and whose id the daemon has not learnt yet)."""
        forge_id = runner.forge_runner_id or self._name_ids.get(runner.name)
        return RunnerRef(forge_id=forge_id or None, name=runner.name)

    def forget(self, runner: Runner) -> None:
        self._looked_at.pop(runner.id, None)
        self._name_ids.pop(runner.name, None)

    def mark_fresh(self, runner_id: str) -> None:
        """Treat the runner's busy/idle view as current (tests of a stale view use it)."""
        self._looked_at[runner_id] = self.clock()

    def forget_all_looks(self) -> None:
        self._looked_at.clear()

    async def refresh(self, *, only: Sequence[Runner] | None = None) -> None:
        """Ask the forges about stale runners (or exactly ``only``) and journal the answer."""
        now = self.clock()
        stale = timedelta(seconds=max(1.0, self.forges.limits.poll_interval_s * 0.9))
        candidates = (
            only
            if only is not None
            else [
                r
                for r in self.journal.active()
                if r.state in {RunnerState.IDLE, RunnerState.BUSY}
                and now - self._looked_at.get(r.id, _NEVER) >= stale
            ]
        )
        by_forge: dict[str, list[Runner]] = {}
        for runner in candidates:
            if runner.forge in self.forges.forges and not self.forges.is_paused(runner.forge):
                by_forge.setdefault(runner.forge, []).append(runner)
        for forge_name, runners in by_forge.items():
            provider = self.forges.forges[forge_name].provider
            refs = [self.forge_ref(r) for r in runners]
            try:
                activity = await self.forges.call(provider.runner_activity(refs))
            except ProviderAuthError as exc:
                self.forges.auth_failed(forge_name, exc)
                continue
            except ProviderError as exc:
                log.warning("forge.activity_failed", forge=forge_name, error=str(exc))
                continue
            by_ref = {a.forge_runner_id: a for a in activity}
            for runner, ref, act in zip(runners, refs, activity, strict=False):
                found = by_ref.get(str(ref)) or by_ref.get(runner.forge_runner_id) or act
                self._apply(runner, found, now)

    def _apply(self, runner: Runner, act: RunnerActivity, now: datetime) -> None:
        self._looked_at[runner.id] = now
        learnt = RunnerRef.parse(act.forge_runner_id).forge_id if act.forge_runner_id else None
        if learnt:
            self._name_ids[runner.name] = learnt
            if not runner.forge_runner_id:
                self.journal.update(runner.id, forge_runner_id=learnt)
        if not act.exists:
            return  # handled when its container ends (JIT runners deregister themselves)
        fields: RunnerFields = {}
        if act.last_job_ended_at is not None:
            fields["last_job_ended_at"] = act.last_job_ended_at
        if act.busy or act.last_job_ended_at is not None:
            self.on_job_taken(runner)
        changed = bool(fields) or (act.busy and act.current_job != runner.current_job)
        fields["current_job"] = act.current_job if act.busy else ""
        if act.busy and runner.state is RunnerState.IDLE:
            self.journal.transition(runner.id, RunnerState.BUSY, now=now, reason="job", **fields)
        elif not act.busy and runner.state is RunnerState.BUSY:
            fields.setdefault("last_job_ended_at", now)
            self.journal.transition(
                runner.id, RunnerState.IDLE, now=now, reason="job_done", **fields
            )
        elif changed:
            self.journal.update(runner.id, **fields)
