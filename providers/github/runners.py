"""GitHub runners: JIT or registration-token registration, delete, activity, sweep.

* **Register**: an ephemeral runner gets a JIT config (``generate-jitconfig``); a
  reusable one a registration token for ``config.sh``, so its id is learnt later by name
  (:meth:`providers.base.RunnerRef.by_name`).
* **Delete** without a look first: GitHub's 422 on a busy runner is the only race-free
  answer, so it becomes :class:`RunnerBusy`.
* **Activity** is one listing of the runner scope's runners (``busy``, ``status``, 100 a
  page) per round, not one request per runner; by-name references resolve from it.
* **Where a runner lives**: at the organisation when the job's repository belongs to a
  configured one (an org runner serves all its repositories), else at the job's own
  repository (a repo-level runner serves only that one). With several repositories and no
  organisation there are several runner scopes: the adapter remembers which one holds
  each runner it registered or listed, and looks in all of them for one it does not know
  (after a restart), so activity, delete and the sweep never look in the wrong place.
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
    AccessDenied,
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
    """The runner side of one GitHub provider: one or more runner scopes (module doc)."""

    def __init__(self, client: GitHubClient, options: GitHubOptions) -> None:
        self._client = client
        self._options = options
        self._prefix = runner_name_prefix(options.instance_id)
        orgs = {o.lower() for o in options.orgs}
        #: Runner scopes (``orgs/<org>`` or ``repos/<owner>/<repo>``): every configured
        #: org, then every configured repository no configured org covers.
        self._scopes: list[str] = [f"orgs/{o}" for o in options.orgs] + [
            f"repos/{r}" for r in options.repos if r.split("/", 1)[0].lower() not in orgs
        ]
        #: Which scope holds a runner, by numeric id and by name (registered or listed).
        self._where: dict[str, str] = {}

    def require_scope(self) -> str:
        """The default runner scope (first org, else first repository)."""
        if not self._scopes:
            raise PermanentProviderError(
                f"{self._client.name}: no repository or organisation configured"
            )
        return self._scopes[0]

    def scope_for(self, job_scope: str) -> str:
        """Where a runner for a job of ``job_scope`` (``owner/repo``) must register.

        "" (a warm or manual runner): the default scope. A repository outside every
        configured scope is refused: a runner registered elsewhere could never take it.
        """
        default = self.require_scope()
        if not job_scope:
            return default
        lowered = job_scope.lower()
        owner = lowered.split("/", 1)[0]
        for scope in self._scopes:
            kind, _, name = scope.partition("/")
            if (kind == "orgs" and name.lower() == owner) or name.lower() == lowered:
                return scope
        raise PermanentProviderError(
            f"{self._client.name}: {job_scope!r} is not a configured repository or in a "
            "configured organisation"
        )

    @staticmethod
    def _base(scope: str) -> str:
        return f"/{scope}/actions/runners"

    def _config_url(self, scope: str) -> str:
        return f"{self._options.web_url.rstrip('/')}/{scope.partition('/')[2]}"

    def _remember(self, scope: str, *keys: str) -> None:
        for key in keys:
            if key:
                self._where[key] = scope

    def _scopes_of(self, refs: Sequence[RunnerRef]) -> list[str]:
        """The scopes to look in for these runners: where they are known to live, or
        every scope if one of them is unknown."""
        wanted: set[str] = set()
        for ref in refs:
            scope = self._where.get(ref.forge_id or "") or self._where.get(ref.name)
            if scope is None:
                return list(self._scopes)
            wanted.add(scope)
        return [s for s in self._scopes if s in wanted]

    async def register_runner(self, request: RunnerRequest) -> Registration:
        """A JIT config (ephemeral) or a registration token for ``config.sh`` (reusable).

        The name must carry this instance's prefix, or :meth:`list_own_runners` could
        never find the registration again to clean it up.
        """
        scope = self.scope_for(request.scope)
        base = self._base(scope)
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
            runner_id = str(int_field(runner.get("id"), "runner id"))
            self._remember(scope, runner_id, request.name)
            return Registration(
                forge_runner_id=runner_id,
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
        self._remember(scope, request.name)
        return Registration(
            forge_runner_id="",  # config.sh registers it; find it by RunnerRef.by_name
            name=request.name,
            command=(
                "/bin/sh",
                "-c",
                REUSABLE_SCRIPT,
                "sh",
                self._config_url(scope),
                request.name,
                ",".join(labels),
            ),
            credential=token,
            credential_env=TOKEN_ENV,
        )

    def _runners(self, scopes: Sequence[str] | None = None, name: str = "") -> list[dict[str, Any]]:
        """The runners of these scopes (see :meth:`_listing`)."""
        return self._listing(scopes, name)[0]

    def _listing(
        self, scopes: Sequence[str] | None = None, name: str = ""
    ) -> tuple[list[dict[str, Any]], list[HTTPStatusError]]:
        """The runners of these scopes (default: all; optionally filtered by exact name),
        every page, and the refusals of scopes skipped. Each runner's scope is remembered.

        A scope that refuses (403/404) is skipped when others answered: one locked
        repository must not blind the rest. It is raised when every scope asked refused.
        """
        if scopes is None:
            self.require_scope()
            scopes = self._scopes
        params = {"per_page": "100", **({"name": name} if name else {})}
        found: list[dict[str, Any]] = []
        refused: list[HTTPStatusError] = []
        for scope in scopes:
            try:
                for page in self._client.pages(self._base(scope), params):
                    for runner in items(page, "runners"):
                        if name and runner.get("name") != name:
                            continue
                        ids = (str(runner.get("id", "")), str(runner.get("name", "")))
                        self._remember(scope, *ids)
                        found.append(runner)
            except (AccessDenied, NotFound) as exc:
                refused.append(exc)
        if refused and len(refused) == len(scopes):
            raise refused[0]
        return found, refused

    def _delete(self, ref: RunnerRef) -> None:
        self.require_scope()
        if ref.forge_id is None:
            matches = self._runners(self._scopes_of([ref]), ref.name)
            if not matches:
                raise RunnerNotFound(f"{self._client.name}: runner {ref} not registered")
            runner_id = str(int_field(matches[0].get("id"), "runner id"))
        elif ref.forge_id.isdigit():
            runner_id = ref.forge_id
        else:
            raise PermanentProviderError(f"{self._client.name}: bad runner id {ref.forge_id!r}")
        # Runner ids are unique across GitHub: in a scope that does not hold it the DELETE
        # answers 404, so an unknown runner is tried in each scope until one holds it.
        refused: AccessDenied | None = None
        for scope in self._scopes_of([RunnerRef(forge_id=runner_id, name=ref.name)]):
            try:
                self._client.json("DELETE", f"{self._base(scope)}/{runner_id}")
            except NotFound:
                continue
            except AccessDenied as exc:
                refused = exc  # it may live there: "gone" would be a guess
                continue
            except HTTPStatusError as exc:
                if exc.status == 422:  # GitHub refuses to delete a runner with a job
                    raise RunnerBusy(f"{self._client.name}: runner {runner_id} is busy") from exc
                raise
            self._where.pop(runner_id, None)
            self._where.pop(ref.name, None)
            return
        if refused is not None:
            raise refused
        raise RunnerNotFound(f"{self._client.name}: runner {runner_id} is gone")

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
        scopes = self._scopes_of(refs)
        listing, refused = await self._client.call(Priority.ACTIVITY, lambda: self._listing(scopes))
        by_id = {str(r.get("id")): r for r in listing}
        by_name = {str(r.get("name")): r for r in listing}
        answers: list[RunnerActivity] = []
        for ref in refs:
            found = by_name.get(ref.name) if ref.forge_id is None else by_id.get(ref.forge_id)
            if found is None:
                if refused:  # it may live in the scope that refused: do not guess
                    raise refused[0]
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
