"""GitLab runners: registration, the pause-check-delete retirement, activity, the sweep.

* **Register** with ``POST /user/runners`` (a ``glrt-`` token; ``runner_type`` from the
  scope) and start ``gitlab-runner run-single`` with it in the environment.
* **Unregister** pauses the runner, checks for a running job, then deletes it (or
  unpauses it and raises :class:`RunnerBusy`): GitLab itself would delete a busy runner
  and lose its job.
* **Activity** is one ``GET /runners?type=<our runner type>`` listing
  (``job_execution_status``, 100 a page) plus ``GET /runners/:id/jobs`` only for runners
  whose busy flag changed since the last look (for the job id and its end): 12 busy
  runners cost 1 request, not 12, per round (issue 11.2). When the listing takes more
  pages than there are runners to check (an instance with thousands of runners), each
  runner is asked directly instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from urllib.parse import quote

from providers.base import (
    ForgeRunner,
    GitLabOptions,
    Registration,
    RunnerActivity,
    RunnerRef,
    RunnerRequest,
    runner_name_prefix,
)
from providers.budget import BudgetShort, Priority
from providers.errors import (
    AccessDenied,
    PermanentProviderError,
    RunnerBusy,
    RunnerNotFound,
)
from providers.gitlab.client import JSON, PER_PAGE, GitLabClient
from providers.gitlab.parse import runner_id
from providers.wire import parse_time


class GitLabRunners:
    """The runner side of one GitLab provider (its own state: ids, last busy flags)."""

    def __init__(self, client: GitLabClient, options: GitLabOptions) -> None:
        self._client = client
        self._options = options
        self._prefix = runner_name_prefix(options.instance_id)
        self._ids: dict[tuple[str, str], int] = {}
        self._paths: dict[tuple[str, str], str] = {}
        self._busy_seen: dict[str, RunnerActivity] = {}
        self._listing_pages = 1  # pages the last runner listing took

    async def register_runner(self, request: RunnerRequest) -> Registration:
        """``POST /user/runners`` with a runner type that fits the scope."""
        data: JSON = {
            "description": request.name,
            "tag_list": list(request.labels),
            "run_untagged": request.run_untagged,
            **await self._runner_owner(request.scope),
        }
        created = await self._client.call(
            Priority.REGISTRATION, lambda: self._client.post("/user/runners", data)
        )
        token = str(created.get("token") or "")
        if not token or "id" not in created:
            raise PermanentProviderError("POST /user/runners answered without id/token")
        return Registration(
            forge_runner_id=str(created["id"]),
            name=request.name,
            command=self._runner_command(request),
            credential=token,
            credential_env="CI_SERVER_TOKEN",
        )

    def _runner_command(self, request: RunnerRequest) -> tuple[str, ...]:
        """The ``gitlab-runner run-single`` line of docs/runner-contract.md (no secret)."""
        return (
            "gitlab-runner",
            "run-single",
            "--url",
            self._options.url,
            "--executor",
            request.executor,
            "--max-builds",
            "1" if request.ephemeral else "0",
            "--wait-timeout",
            str(request.idle_timeout_s),
            *request.executor_args,
        )

    def runner_type(self) -> str:
        opts = self._options
        if opts.runner_type:
            return opts.runner_type
        if opts.instance:
            return "instance_type"
        if opts.runner_group_id is not None:
            return "group_type"
        if opts.runner_project_id is not None:
            return "project_type"
        if opts.groups:
            return "group_type"
        if opts.projects:
            return "project_type"
        raise PermanentProviderError("no scope to register a runner in; set runner_type")

    async def _runner_owner(self, scope: str) -> JSON:
        """``runner_type`` plus the ``group_id``/``project_id`` it needs.

        Without a configured ``runner_project_id``/``runner_group_id``, a project runner
        is created in the project of the job it is for (``scope``), a group runner in the
        configured group holding that project: a project runner serves only its project
        and a group runner only its group, so the first configured one would leave the
        job of another project waiting forever. A runner for no job (warm, manual) goes
        to the first configured project or group.
        """
        runner_type = self.runner_type()
        opts = self._options
        if runner_type == "group_type":
            gid = opts.runner_group_id
            if gid is None:
                gid = await self._numeric_id("groups", await self._group_for(scope))
            return {"runner_type": runner_type, "group_id": gid}
        if runner_type == "project_type":
            pid = opts.runner_project_id
            if pid is None:
                project = scope or (opts.projects[0] if opts.projects else "")
                pid = await self._numeric_id("projects", project)
            return {"runner_type": runner_type, "project_id": pid}
        return {"runner_type": runner_type}

    async def _group_for(self, scope: str) -> str:
        """The configured group that holds project ``scope`` (the first one if none
        does, or if there is only one)."""
        groups = self._options.groups
        if len(groups) < 2 or not scope:
            return groups[0] if groups else ""
        path = (await self._full_path("projects", scope)).lower()
        for group in groups:
            if path.startswith((await self._full_path("groups", group)).lower() + "/"):
                return group
        return groups[0]

    async def _full_path(self, kind: str, ref: str) -> str:
        """The full path of a project/group given by id or path (cached)."""
        if not ref.isdigit():
            return ref
        cached = self._paths.get((kind, ref))
        if cached is None:
            path = f"/{kind}/{ref}"
            entity = await self._client.call(Priority.REGISTRATION, lambda: self._client.get(path))
            key = "path_with_namespace" if kind == "projects" else "full_path"
            cached = self._paths[(kind, ref)] = str(entity.get(key) or "")
        return cached

    async def _numeric_id(self, kind: str, ref: str) -> int:
        """The numeric id of a group/project given by id or full path (cached)."""
        if not ref:
            raise PermanentProviderError(f"no {kind} configured to register runners in")
        if ref.isdigit():
            return int(ref)
        cached = self._ids.get((kind, ref))
        if cached is None:
            path = f"/{kind}/{quote(ref, safe='')}"
            entity = await self._client.call(Priority.REGISTRATION, lambda: self._client.get(path))
            cached = self._ids[(kind, ref)] = int(entity["id"])
        return cached

    async def unregister_runner(self, runner: RunnerRef | str, *, force: bool = False) -> None:
        """Pause, make sure no job runs on it, then ``DELETE /runners/:id``.

        GitLab deletes a runner even while it runs a job (and the job is lost), so the
        check must not race a job pickup: a paused runner is handed no new jobs. If a job
        is running, the runner is unpaused again and :class:`RunnerBusy` keeps it. With
        ``force`` (its container is going away anyway) it is deleted straight away. Only a
        runner whose description has this instance's prefix is ever touched.
        """
        forge_runner_id = runner_id(RunnerRef.of(runner))
        path = f"/runners/{quote(forge_runner_id, safe='')}"
        prio = Priority.REGISTRATION
        entity = await self._client.runner_call(prio, lambda: self._client.get(path))
        if not str(entity.get("description") or "").startswith(self._prefix):
            raise PermanentProviderError(
                f"runner {forge_runner_id} was not created by this instance; not deleting it"
            )
        if not force:
            await self._client.runner_call(prio, lambda: self._client.put(path, {"paused": True}))
            activity = await self._jobs_of(forge_runner_id, prio)
            if activity.busy:
                await self._client.runner_call(
                    prio, lambda: self._client.put(path, {"paused": False})
                )
                raise RunnerBusy(f"runner {forge_runner_id} is running job {activity.current_job}")
        await self._client.runner_call(prio, lambda: self._client.delete(path))
        self._busy_seen.pop(forge_runner_id, None)

    async def list_own_runners(self) -> Sequence[ForgeRunner]:
        """Runners whose description starts with this instance's prefix."""
        runners = await self._all_runners(Priority.SWEEP)
        return [
            ForgeRunner(
                id=str(r["id"]),
                name=str(r.get("description") or ""),
                online=bool(r.get("online")),
                busy=r.get("job_execution_status") == "active",
            )
            for r in runners
            if str(r.get("description") or "").startswith(self._prefix)
        ]

    async def _all_runners(self, priority: Priority, query: JSON | None = None) -> list[JSON]:
        """``/runners/all`` for an admin instance scope, else (or when refused) ``/runners``."""
        if self._options.instance:
            try:
                return await self._client.call(
                    priority, lambda: self._client.list("/runners/all", query)
                )
            except AccessDenied:
                pass  # not an admin after all: the runners this user manages still count
        return await self._client.call(priority, lambda: self._client.list("/runners", query))

    async def runner_activity(self, runners: Sequence[RunnerRef | str]) -> Sequence[RunnerActivity]:
        """Busy flags from one runner listing; per-runner job look-ups only on change.

        A runner whose ``job_execution_status`` is what it was last time answers from
        memory; one that changed (or is not in the listing) costs one
        ``GET /runners/:id/jobs``, which also gives the job id and the last job's end.
        """
        ids = [runner_id(RunnerRef.of(r)) for r in runners]
        if not ids:
            return []
        if len(ids) < self._listing_pages:  # a huge instance: asking each one is cheaper
            each = await asyncio.gather(
                *(self._jobs_of(r, Priority.ACTIVITY) for r in ids), return_exceptions=True
            )
            for outcome in each:  # every call has ended: no stray task outlives this one
                if isinstance(outcome, BaseException):
                    raise outcome
            return [a for a in each if isinstance(a, RunnerActivity)]
        found = await self._all_runners(Priority.ACTIVITY, {"type": self.runner_type()})
        self._listing_pages = max(1, -(-len(found) // PER_PAGE))
        listing = {str(r.get("id")): r for r in found}
        answers: dict[str, RunnerActivity] = {}
        to_check: list[str] = []
        for rid in ids:
            listed = listing.get(rid)
            previous = self._busy_seen.get(rid)
            busy = listed is not None and listed.get("job_execution_status") == "active"
            if listed is not None and previous is not None and previous.busy == busy:
                answers[rid] = previous
            else:
                to_check.append(rid)
        checks: list[Awaitable[RunnerActivity]] = [
            self._jobs_of(rid, Priority.ACTIVITY) for rid in to_check
        ]
        outcomes = await asyncio.gather(*checks, return_exceptions=True)
        for rid, outcome in zip(to_check, outcomes, strict=True):
            if isinstance(outcome, RunnerActivity):
                answers[rid] = outcome
            elif isinstance(outcome, BudgetShort) and rid in listing:
                busy = listing[rid].get("job_execution_status") == "active"
                answers[rid] = RunnerActivity(rid, busy=busy)  # detail next round
                continue
            elif isinstance(outcome, BaseException):
                raise outcome
            if answers[rid].exists:
                self._busy_seen[rid] = answers[rid]
            else:
                self._busy_seen.pop(rid, None)
        return [answers[rid] for rid in ids]

    async def _jobs_of(self, runner_id: str, priority: Priority) -> RunnerActivity:
        """One request: the runner's newest jobs show both a running job and the last end.

        A runner takes jobs one at a time here (run-single), so a running job is among
        its newest; ``last_job_ended_at`` is the latest ``finished_at`` among them.
        """
        path = f"/runners/{quote(runner_id, safe='')}/jobs"
        query = {"order_by": "id", "sort": "desc", "per_page": 5}
        try:
            recent = await self._client.runner_call(
                priority, lambda: self._client.list(path, query, all_pages=False)
            )
        except RunnerNotFound:
            return RunnerActivity(runner_id, busy=False, exists=False)
        running = [j for j in recent if j.get("status") == "running"]
        if running:
            return RunnerActivity(runner_id, busy=True, current_job=str(running[0]["id"]))
        ended = [t for t in (parse_time(j.get("finished_at")) for j in recent) if t]
        return RunnerActivity(runner_id, busy=False, last_job_ended_at=max(ended, default=None))
