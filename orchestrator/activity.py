"""Busy/idle sync: what the forges say our runners are doing, written to the journal.

Asked only for runners whose view is older than ~one poll interval (and right before a
retirement, for the one runner concerned), batched per forge, skipped for paused forges,
each forge call under the tracker's deadline. A runner seen taking a job proves its pool
healthy (see :class:`orchestrator.backoff.SpawnBackoff`).

Like the job polls (:mod:`orchestrator.forges`), each forge's check is its own task and a
reconcile waits for them at most the tracker's ``poll_grace_s``: a forge trickling on its
runner endpoints must not hold the reconcile (every other forge, the Docker side) for up
to ``FORGE_CALL_TIMEOUT``. A check still running after the grace keeps going; its runners
keep their previous view, and its answer is applied by a later :meth:`refresh` (always
under the reconcile lock: the task only asks, it never writes the journal). At most one
check per forge is in flight. While a forge's check is unanswered its runners' activity is
*unknown*, and :meth:`refresh` says so: a retirement never unregisters on an unknown.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from orchestrator.forges import ForgeTracker
from orchestrator.models import Runner, RunnerState
from orchestrator.state import Journal, RunnerFields, UnknownRunner
from providers.base import RunnerActivity, RunnerRef
from providers.errors import ProviderAuthError, ProviderError

log = structlog.get_logger("orchestrator.activity")

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclasses.dataclass
class _Check:
    """One forge's activity check in flight: whom it asked, when, and the request task."""

    runners: list[Runner]
    refs: list[RunnerRef]
    asked_at: datetime
    task: asyncio.Task[Sequence[RunnerActivity]]


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
        self._checks: dict[str, _Check] = {}  # forge -> its check in flight

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

    async def refresh(self, *, only: Sequence[Runner] | None = None) -> frozenset[str]:
        """Ask the forges about stale runners (or exactly ``only``) and journal the answer.

        Returns the forges whose check has not answered within the grace: their runners'
        activity is unknown this round (a retirement must keep them). Late answers of
        earlier rounds are applied first."""
        self._collect()
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
        asked: set[str] = set()
        for forge_name, runners in by_forge.items():
            asked.add(forge_name)
            if forge_name in self._checks:
                continue  # its previous check still runs: no second one piles up
            provider = self.forges.forges[forge_name].provider
            refs = [self.forge_ref(r) for r in runners]
            task = asyncio.create_task(
                self.forges.call(provider.runner_activity(refs)),
                name=f"activity-{forge_name}",
            )
            self._checks[forge_name] = _Check(runners, refs, now, task)
        tasks = [self._checks[f].task for f in asked if f in self._checks]
        if tasks:
            await asyncio.wait(tasks, timeout=self.forges.limits.poll_grace_s)
        self._collect()
        return frozenset(asked & self._checks.keys())

    def pending(self, forge: str) -> bool:
        """True while the forge's activity check is still unanswered."""
        return forge in self._checks

    async def aclose(self) -> None:
        """Cancel checks still in flight (shutdown)."""
        tasks = [c.task for c in self._checks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._checks.clear()

    def _collect(self) -> None:
        """Apply every finished check (the caller holds the reconcile lock). An exception
        that is not a :class:`ProviderError` is a bug and is raised here."""
        for forge_name, check in list(self._checks.items()):
            if not check.task.done():
                continue
            del self._checks[forge_name]
            try:
                activity = check.task.result()
            except ProviderAuthError as exc:
                self.forges.auth_failed(forge_name, exc)
                continue
            except ProviderError as exc:
                log.warning("forge.activity_failed", forge=forge_name, error=str(exc))
                continue
            by_ref = {a.forge_runner_id: a for a in activity}
            for asked, ref, act in zip(check.runners, check.refs, activity, strict=False):
                try:
                    runner = self.journal.get(asked.id)  # as it is now, not as asked
                except UnknownRunner:
                    continue
                if runner.state not in {RunnerState.IDLE, RunnerState.BUSY}:
                    continue  # retired or ended meanwhile: a late answer has no say
                found = by_ref.get(str(ref)) or by_ref.get(runner.forge_runner_id) or act
                self._apply(runner, found, check.asked_at)

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
