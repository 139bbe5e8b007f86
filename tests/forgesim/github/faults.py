"""GitHub-shaped faults: a repository refusing the token, the limits, churn, id links.

Answer kinds (the shared middleware answers with them; bounds, ``match`` and ``count``
as in :mod:`tests.forgesim.faults`):

* ``forbidden`` ``{repo?, shape?: "pat"|"integration"|"not_found"}``: one repository (all
  of its API paths, by name and by id) refuses the token while others answer. "pat" is
  403 "Resource not accessible by personal access token" (a fine-grained PAT without that
  repository), "integration" the GitHub App wording, "not_found" the 404 GitHub gives
  for a repository the token may not see (docs: "may return 404 instead of 403").
* ``rate_limit`` ``{shape: "primary"|"secondary"|"abuse", status?: 403|429,
  retry_after?, reset_in?}``: see :mod:`.shapes`.

State kinds (read by the handlers while live):

* ``secondary_limit`` ``{per_minute, status?, retry_after?, wording?}``: a per-minute
  counter of *every* API request, 304s included (GitHub: conditional requests are free
  only against the primary limit); above ``per_minute`` the answer is
  :func:`.shapes.secondary_limit`. The primary limit keeps exempting 304s.
* ``churn`` ``{step_seconds?}``: in-progress jobs grow steps as time passes and their run's
  ``updated_at`` moves, so ETags change between polls and conditional requests cost.
* ``id_links`` ``{}``: ``Link`` URLs in GitHub's real ``/repositories/{id}/...`` and
  ``/organizations/{id}/...`` form (served as aliases of the name routes).
* ``oversized_page`` ``{size?}``: lists ignore the ``per_page`` cap of 100 and answer up to
  ``size`` (default 100000) items in one page.
"""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from tests.forgesim.faults import FaultRule
from tests.forgesim.github import shapes
from tests.forgesim.github.state import SIM, GitHubSim

STATE_KINDS = ("secondary_limit", "churn", "id_links", "oversized_page")


def forbidden(rule: FaultRule, request: web.Request) -> web.Response:  # noqa: ARG001
    shape = str(rule.params.get("shape", "pat"))
    if shape == "not_found":
        return shapes.error(404, "Not Found")
    if shape == "integration":
        return shapes.error(403, "Resource not accessible by integration")
    return shapes.error(403, "Resource not accessible by personal access token")


def rate_limit(rule: FaultRule, request: web.Request) -> web.Response:
    sim = request.app[SIM]
    shape = str(rule.params.get("shape", "secondary"))
    status = int(rule.params.get("status", 403))
    if shape == "primary":
        reset = time.time() + float(rule.params.get("reset_in", 3600))
        return shapes.primary_limit(status, sim.rate_limit, reset)
    wording = "abuse" if shape == "abuse" else "secondary"
    return shapes.secondary_limit(status, rule.params.get("retry_after"), wording)


ANSWERS = {"forbidden": forbidden, "rate_limit": rate_limit}


def fault_match(sim: GitHubSim, kind: str, params: dict[str, Any]) -> str | None:  # noqa: ARG001
    """``repo`` ("owner/name") -> every API path of that repository, by name and by id."""
    full = params.pop("repo", None)
    if full is None:
        return None
    names = [rf"repos/{re.escape(str(full))}"]
    repo = sim.repos.get(str(full))
    if repo is not None:
        names.append(rf"repositories/{repo.id}")
    return rf"^/api/v3/(?:{'|'.join(names)})(?:/|$)"
