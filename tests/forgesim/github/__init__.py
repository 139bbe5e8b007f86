"""A small GitHub (GHES-style) simulator for the GitHub provider's tests.

The REST API lives under ``/api/v3`` (so PyGithub's ``base_url`` is
``http://127.0.0.1:P/api/v3``), the runner-facing side under ``/_runner/`` exactly as in
``docs/runner-contract.md``, and the control endpoints under ``/_sim/`` (never recorded,
never faulted, no token).

API (token: ``Authorization: token T`` or ``Bearer T``; anything else is 401):

* ``GET /rate_limit`` (free), ``GET /repos/{o}/{r}``, ``GET /orgs/{org}``,
  ``GET /orgs/{org}/repos``;
* ``GET /repos/{o}/{r}/actions/runs?status=`` (``queued``/``in_progress``/``completed``),
  ``GET .../actions/runs/{id}``, ``GET .../actions/runs/{id}/jobs``,
  ``GET .../actions/jobs/{id}``;
* for ``/repos/{o}/{r}`` and ``/orgs/{org}``: ``GET actions/runners[?name=]``,
  ``GET|DELETE actions/runners/{id}`` (DELETE of a busy runner is 422),
  ``POST actions/runners/registration-token``, ``.../remove-token``,
  ``.../generate-jitconfig`` (409 when the name is taken in that scope).

Lists page with ``per_page`` (max 100) and ``page``, answer ``total_count`` and a
``Link`` header. Every API response (faulted ones included) carries ``x-ratelimit-*``
headers. GET answers carry a
weak ``ETag``; a matching ``If-None-Match`` gives 304, which (as on GitHub) does not use
the rate limit. Everything else except ``/rate_limit`` uses one request of the budget; when
it is spent the answer is 403 with ``x-ratelimit-remaining: 0``.

Runs: a run is ``queued`` while all its jobs are queued, ``in_progress`` once any job has
started and ``completed`` when all jobs are. Runner matching: a job's labels must all be
among the runner's labels (case-insensitive), and the job's repository must be in the
runner's scope (its repository, or a repository of its organisation).

Control endpoints:

* ``POST /_sim/repos/{owner}/{repo}/jobs`` ``{"labels": [...], "duration": s,
  "run_id"?: id, "name"?: str}`` -> ``{"id": job_id}``. Without ``run_id`` every job gets
  its own new run; repository (and run) are created as needed.
* ``POST /_sim/repos/{owner}/{repo}/runs`` -> ``{"id": run_id}``: an empty run, to put many
  jobs in (with ``run_id`` above).
* ``POST /_sim/repos/{owner}/{repo}`` -> ``{"id": repo_id}``: create a repository.
* ``POST /_sim/orgs/{org}/repos`` ``{"repos": ["name", ...]}`` -> ``{"ids": [...]}``:
  create repositories ``org/name`` (the organisation is created as needed).
* ``POST /_sim/rate-limit`` ``{"limit"?: n, "remaining"?: n, "reset_in"?: s}``: set the
  budget (for the poll-stretching tests).
* ``GET /_sim/state`` -> ``{"jobs": [{"id", "repo", "status", "labels", "runner_name"}],
  "runners": [{"id", "name", "labels", "busy", "status"}], "requests": n,
  "rate_limit_used": n}``.
* ``POST /_sim/webhook-target`` ``{"url": ..., "secret": ...}``: deliver signed
  ``workflow_job`` events (queued, in_progress, completed) there, fire-and-forget.
* ``POST /_sim/faults``: see :mod:`tests.forgesim.common`.
* ``POST /_sim/apps``, ``POST /_sim/apps/revoke``: GitHub Apps and their installation
  tokens (``POST /app/installations/{id}/access_tokens``), see :mod:`.apps`.

Standalone: ``python -m tests.forgesim.github --port P --token T`` (or :func:`serve`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
from collections.abc import Sequence

from aiohttp import web

from tests.forgesim.common import SIM_KEY, RunningSim, make_app
from tests.forgesim.github import apps, control, faults, routes, runner_side
from tests.forgesim.github.http import api_middleware
from tests.forgesim.github.model import API
from tests.forgesim.github.state import SIM, GitHubSim

__all__ = ["SIM", "GitHubSim", "create_app", "main", "serve"]


def create_app(token: str) -> web.Application:
    """The simulator application; ``token`` is the only API token it accepts."""
    sim = GitHubSim(token)
    app = make_app(sim, faults.ANSWERS, faults.STATE_KINDS)
    sim.match_hook = functools.partial(faults.fault_match, sim)
    app.middlewares.append(api_middleware)
    app[SIM] = sim
    # make_app stored the same object under SIM_KEY for the shared middleware.
    assert app[SIM_KEY] is sim

    async def _rate_headers_everywhere(request: web.Request, response: web.StreamResponse) -> None:
        # Also on answers the shared fault middleware produced (it runs outside ours).
        if request.path.startswith(API + "/"):
            for key, value in sim.rate_headers().items():
                response.headers.setdefault(key, value)

    app.on_response_prepare.append(_rate_headers_everywhere)
    r = app.router
    r.add_get(f"{API}/rate_limit", routes.rate_limit)
    r.add_post(
        f"{API}/app/installations/{{installation_id:\\d+}}/access_tokens", apps.access_tokens
    )
    # Every route also under GitHub's id form (what its Link headers point to).
    for org in (f"{API}/orgs/{{org}}", f"{API}/organizations/{{org_id:\\d+}}"):
        r.add_get(org, routes.get_org)
        r.add_get(f"{org}/repos", routes.org_repos)
    repos = (f"{API}/repos/{{owner}}/{{repo}}", f"{API}/repositories/{{repo_id:\\d+}}")
    for repo in repos:
        r.add_get(repo, routes.get_repo)
        r.add_get(f"{repo}/actions/runs", routes.list_runs)
        r.add_get(f"{repo}/actions/runs/{{run_id:\\d+}}", routes.get_run)
        r.add_get(f"{repo}/actions/runs/{{run_id:\\d+}}/jobs", routes.run_jobs)
        r.add_get(f"{repo}/actions/jobs/{{job_id:\\d+}}", routes.get_job)
    scopes = (*repos, f"{API}/orgs/{{org}}", f"{API}/organizations/{{org_id:\\d+}}")
    for actions in (f"{scope}/actions" for scope in scopes):
        r.add_get(f"{actions}/runners", routes.list_runners)
        r.add_post(f"{actions}/runners/registration-token", routes.registration_token)
        r.add_post(f"{actions}/runners/remove-token", routes.remove_token)
        r.add_post(f"{actions}/runners/generate-jitconfig", routes.generate_jitconfig)
        r.add_get(f"{actions}/runners/{{runner_id:\\d+}}", routes.get_runner)
        r.add_delete(f"{actions}/runners/{{runner_id:\\d+}}", routes.delete_runner)
    r.add_post("/_runner/register", runner_side.runner_register)
    r.add_post("/_runner/acquire", runner_side.runner_acquire)
    r.add_post("/_runner/jobs/{job_id:\\d+}/complete", runner_side.runner_complete)
    r.add_post("/_runner/offline", runner_side.runner_offline)
    r.add_post("/_sim/repos/{owner}/{repo}/jobs", control.control_create_job)
    r.add_post("/_sim/repos/{owner}/{repo}/runs", control.control_create_run)
    r.add_post("/_sim/repos/{owner}/{repo}", control.control_create_repo)
    r.add_post("/_sim/orgs/{org}/repos", control.control_create_org_repos)
    r.add_post("/_sim/rate-limit", control.control_rate_limit)
    r.add_get("/_sim/state", control.control_state)
    r.add_post("/_sim/apps", apps.control_register_app)
    r.add_post("/_sim/apps/revoke", apps.control_revoke_tokens)
    r.add_post("/_sim/webhook-target", control.control_webhook_target)
    r.add_post("/_sim/jobs/{id:\\d+}/approve", control.control_approve_job)
    r.add_post("/_sim/jobs/{id:\\d+}/webhook", control.control_job_webhook)
    return app


async def serve(port: int, token: str) -> None:
    """Serve the simulator on 127.0.0.1:``port`` until cancelled."""
    async with RunningSim(create_app(token), port) as sim:
        print(f"forgesim github listening on {sim.url}", flush=True)  # noqa: T201
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tests.forgesim.github --port P --token T``."""
    parser = argparse.ArgumentParser(prog="forgesim-github")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.token))


if __name__ == "__main__":
    main()
