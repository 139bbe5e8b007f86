"""``GITLAB_GRAPHQL`` is on by default: it must be robust to every way a GitLab refuses it.

The default was chosen by this test: an instance without the endpoint (404), a proxy or
policy refusing it (403), and an older schema lacking a field (200 with ``errors``) must
each leave the poll complete over REST, and not be asked again for an hour.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.integration.test_gitlab_forgesim import (  # noqa: F401 (fixtures)
    FakeClock,
    Sim,
    make_provider,
    sim,
    sim_user,
)


@pytest.mark.parametrize("shape", ["not_found", "forbidden", "field_missing"])
async def test_a_refused_graphql_endpoint_leaves_the_rest_poll_complete(
    sim_user: Sim,  # noqa: F811
    make_provider: Any,  # noqa: F811
    shape: str,
) -> None:
    await sim_user.add_projects(1, 2, 3)
    wanted = {str(await sim_user.add_job(p, ["docker"])) for p in (1, 2, 3)}
    seen: Counter[str] = Counter()
    provider = make_provider(
        sim_user,
        projects=("1", "2", "3"),
        graphql_poll=True,
        clock=FakeClock(),
        observer=lambda _f, e, _s: seen.update([e]),
    )
    assert {j.id for j in await provider.pending_jobs()} == wanted
    assert seen == Counter({"POST /graphql": 1})  # a user token: three projects, one request
    await sim_user.ctl("POST", "/_sim/faults", {"kind": "graphql_refused", "shape": shape})
    seen.clear()
    assert {j.id for j in await provider.pending_jobs()} == wanted
    assert seen["GET /projects/:id/jobs"] == 3
    assert provider.health().scope_errors == {}  # the refusal is not a project's fault
    seen.clear()
    assert {j.id for j in await provider.pending_jobs()} == wanted
    assert seen["POST /graphql"] == 0  # not asked again (for an hour)
    await provider.aclose()
