"""GitHub runners: JIT or registration-token registration, delete, activity, sweep.

* **Register**: an ephemeral runner gets a JIT config (``generate-jitconfig``); a
  reusable one a registration token for ``config.sh``, so its id is learnt later by name
  (:meth:`providers.base.RunnerRef.by_name`).
* **Delete** without a look first: GitHub's 422 on a busy runner is the only race-free
  answer, so it becomes :class:`RunnerBusy`.
* **Activity** is one listing of the runner scope's runners (``busy``, ``status``, 100 a
  page) per round, not one request per runner; by-name references resolve from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from providers.base import (
    ForgeRunner,
    GitHubOptions,
    Registration,
    RunnerActivity,
    RunnerRef,
    RunnerRequest,
    runner_name_prefix,
)
from providers.budget import Priority
from providers.errors import (
    HTTPStatusError,
    NotFound,
    PermanentProviderError,
    RunnerBusy,
    RunnerNotFound,
)
from providers.github.client import GitHubClient
from providers.github.parse import MalformedAnswer, int_field, items

#: Where the reusable runner's ``config.sh`` and ``run.sh`` live (official image).
JIT_COMMAND = ("/home/runner/run.sh",)
#: docs/runner-contract.md: URL, name and labels are positional, never interpolated.
REUSABLE_SCRIPT = (
    '/home/runner/config.sh --unattended --disableupdate --url "$1" --name "$2" '
    '--labels "$3" --work _work && exec /home/runner/run.sh'
)
JIT_ENV = "ACTIONS_RUNNER_INPUT_JITCONFIG"
TOKEN_ENV = "ACTIONS_RUNNER_INPUT_TOKEN"  # noqa: S105 - an env var name, not a secret


class GitHubRunners:
    """The runner side of one GitHub provider: registers at the first org, else repo."""

    def __init__(self, client: GitHubClient, options: GitHubOptions) -> None:
        self._client = client
        self._options = options
        self._prefix = runner_name_prefix(options.instance_id)
        if options.orgs:
            self._runner_base = f"/orgs/{options.orgs[0]}/actions/runners"
            self._config_url = f"{options.web_url.rstrip('/')}/{options.orgs[0]}"
        elif options.repos:
            self._runner_base = f"/repos/{options.repos[0]}/actions/runners"
            self._config_url = f"{options.web_url.rstrip('/')}/{options.repos[0]}"
        else:
            self._runner_base = ""
            self._config_url = ""

    def require_scope(self) -> str:
        if not self._runner_base:
            raise PermanentProviderError(
                f"{self._client.name}: no repository or organisation configured"
            )
        return self._runner_base

    async def register_runner(self, request: RunnerRequest) -> Registration:
        """A JIT config (ephemeral) or a registration token for ``config.sh`` (reusable).

        The name must carry this instance's prefix, or :meth:`list_own_runners` could
        never find the registration again to clean it up.
        """
        base = self.require_scope()
        if not request.name.startswith(self._prefix):
            raise PermanentProviderError(
                f"{self._client.name}: runner name {request.name!r} lacks prefix {self._prefix!r}"
            )
        labels = list(request.labels) or ["self-hosted"]
        if request.ephemeral:
            body = {
                "name": request.name,
                "runner_group_id": self._options.runner_group_id,
                "labels": labels,
                "work_folder": "_work",
            }
            try:
                data = await self._client.call(
                    Priority.REGISTRATION,
                    lambda: self._client.json("POST", f"{base}/generate-jitconfig", body),
                )
            except HTTPStatusError as exc:
                raise HTTPStatusError(
                    f"{exc} (generate-jitconfig {request.name})", exc.status
                ) from exc
            runner = data.get("runner") if isinstance(data, dict) else None
            credential = data.get("encoded_jit_config") if isinstance(data, dict) else None
            if not isinstance(runner, dict) or not isinstance(credential, str):
                raise MalformedAnswer(f"{self._client.name}: malformed JIT answer")
            return Registration(
                forge_runner_id=str(int_field(runner.get("id"), "runner id")),
                name=request.name,
                command=JIT_COMMAND,
                credential=credential,
                credential_env=JIT_ENV,
            )
        data = await self._client.call(
            Priority.REGISTRATION, lambda: self._client.json("POST", f"{base}/registration-token")
        )
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise MalformedAnswer(f"{self._client.name}: malformed token answer")
        return Registration(
            forge_runner_id="",  # config.sh registers it; find it by RunnerRef.by_name
            name=request.name,
            command=(
                "/bin/sh",
                "-c",
                REUSABLE_SCRIPT,
                "sh",
                self._config_url,
                request.name,
                ",".join(labels),
            ),
            credential=token,
            credential_env=TOKEN_ENV,
        )

    def _runners(self, name: str = "") -> list[dict[str, Any]]:
        """The runner scope's runners (optionally filtered by exact name), every page."""
        base = self.require_scope()
        params = {"per_page": "100", **({"name": name} if name else {})}
        found: list[dict[str, Any]] = []
        for page in self._client.pages(base, params):
            found.extend(r for r in items(page, "runners") if not name or r.get("name") == name)
        return found

    def _delete(self, ref: RunnerRef) -> None:
        base = self.require_scope()
        if ref.forge_id is None:
            matches = self._runners(ref.name)
            if not matches:
                raise RunnerNotFound(f"{self._client.name}: runner {ref} not registered")
            runner_id = str(int_field(matches[0].get("id"), "runner id"))
        elif ref.forge_id.isdigit():
            runner_id = ref.forge_id
        else:
            raise PermanentProviderError(f"{self._client.name}: bad runner id {ref.forge_id!r}")
        try:
            self._client.json("DELETE", f"{base}/{runner_id}")
        except NotFound as exc:
            raise RunnerNotFound(f"{self._client.name}: runner {runner_id} is gone") from exc
        except HTTPStatusError as exc:
            if exc.status == 422:  # GitHub refuses to delete a runner with a job
                raise RunnerBusy(f"{self._client.name}: runner {runner_id} is busy") from exc
            raise

    async def unregister_runner(self, runner: RunnerRef | str, *, force: bool = False) -> None:
        """Delete the registration (by id or by name); never a busy runner.

        There is no look-before-delete: GitHub's 422 on a busy runner is the only race-free
        answer, so it becomes :class:`RunnerBusy` (keep the runner).
        """
        ref = RunnerRef.of(runner)
        await self._client.call(Priority.REGISTRATION, lambda: self._delete(ref))

    async def runner_activity(self, runners: Sequence[RunnerRef | str]) -> Sequence[RunnerActivity]:
        """Busy flag and online status from one listing, in input order.

        A runner not in the listing has ``exists=False`` (a by-name one keeps its
        ``name:`` text form in ``forge_runner_id`` until it has registered).
        """
        refs = [RunnerRef.of(r) for r in runners]
        if not refs:
            return []
        listing = await self._client.call(Priority.ACTIVITY, self._runners)
        by_id = {str(r.get("id")): r for r in listing}
        by_name = {str(r.get("name")): r for r in listing}
        answers: list[RunnerActivity] = []
        for ref in refs:
            found = by_name.get(ref.name) if ref.forge_id is None else by_id.get(ref.forge_id)
            if found is None:
                answers.append(RunnerActivity(forge_runner_id=str(ref), busy=False, exists=False))
                continue
            answers.append(
                RunnerActivity(
                    forge_runner_id=str(int_field(found.get("id"), "runner id")),
                    busy=bool(found.get("busy")),
                    online=found.get("status") == "online",
                )
            )
        return answers

    def _list_own(self) -> list[ForgeRunner]:
        own: list[ForgeRunner] = []
        for runner in self._runners():
            name = str(runner.get("name", ""))
            if not name.startswith(self._prefix):
                continue  # another instance's or a human's runner: never touch it
            labels = tuple(
                str(label.get("name", "")) if isinstance(label, dict) else str(label)
                for label in runner.get("labels") or []
            )
            own.append(
                ForgeRunner(
                    id=str(int_field(runner.get("id"), "runner id")),
                    name=name,
                    online=runner.get("status") == "online",
                    busy=bool(runner.get("busy")),
                    labels=labels,
                )
            )
        return own

    async def list_own_runners(self) -> Sequence[ForgeRunner]:
        """Registrations in the runner scope whose name carries this instance's prefix."""
        return await self._client.call(Priority.SWEEP, self._list_own)
