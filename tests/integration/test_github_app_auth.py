"""GitHub App authentication against the GitHub simulator, over real HTTP.

The daemon acts as an App installation: its private key signs a JWT, the JWT buys an
installation token, and that token authorises every other call until it is renewed. The
simulator verifies the JWT with the App's public key (RS256, ``iss``, lifetime) and accepts
only the tokens it issued; the PAT it was started with is never sent.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from providers.base import RunnerRequest, runner_name_prefix
from providers.errors import ProviderAuthError
from providers.github import GitHubProvider
from tests.appkeys import app_key_pair, app_provider
from tests.forgesim.common import SIM_KEY, RunningSim
from tests.forgesim.github import create_app

APP_ID = "424242"
INSTALLATION = 77
PREFIX = runner_name_prefix("app1")
ROOT = Path(__file__).resolve().parents[2]


PRIVATE_KEY, PUBLIC_KEY = app_key_pair()


class Sim:
    def __init__(self, running: RunningSim, http: aiohttp.ClientSession) -> None:
        self.running = running
        self.url = running.url
        self.http = http

    async def post(self, path: str, body: Any = None) -> Any:
        async with self.http.post(self.url + path, json=body or {}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def state(self) -> dict[str, Any]:
        async with self.http.get(self.url + "/_sim/state") as resp:
            return dict(await resp.json())

    def api_requests(self) -> list[tuple[str, int]]:
        """``(path, status)`` of every API request, in order (the recorder keeps no
        credential header)."""
        return [
            (r.path, r.status)
            for r in self.running.app[SIM_KEY].requests
            if r.path.startswith("/api/v3/")
        ]


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    # The simulator's own PAT is one the daemon does not have: only App tokens can work.
    async with RunningSim(create_app("ghp_not_given_to_the_daemon")) as running:
        async with aiohttp.ClientSession() as http:
            s = Sim(running, http)
            await s.post("/_sim/repos/octo/app")
            await s.post(
                "/_sim/apps",
                {"app_id": APP_ID, "public_key": PUBLIC_KEY, "installation_id": INSTALLATION},
            )
            yield s
            assert (await s.state())["runners"] == [], "a test left a runner registered"


def provider(
    sim: Sim, *, key: str = PRIVATE_KEY, installation: int = INSTALLATION
) -> GitHubProvider:
    return app_provider(
        sim.url, app_id=APP_ID, installation_id=installation, private_key=key, instance_id="app1"
    )


async def test_an_app_installation_polls_and_registers_with_one_token(sim: Sim) -> None:
    gh = provider(sim)
    await sim.post("/_sim/repos/octo/app/jobs", {"labels": ["linux"], "duration": 0})
    for _ in range(3):
        jobs = await gh.pending_jobs()
        assert [j.tags for j in jobs] == [("linux",)]
    reg = await gh.register_runner(
        RunnerRequest(
            name=PREFIX + "a", pool="default", labels=("linux",), run_untagged=False, ephemeral=True
        )
    )
    await gh.unregister_runner(reg.forge_runner_id)

    assert (await sim.state())["token_exchanges"] == 1
    sent = sim.api_requests()
    assert sent[0] == (f"/api/v3/app/installations/{INSTALLATION}/access_tokens", 201)
    # Everything after it was authorised by the installation token (the PAT is unknown).
    assert len(sent) > 5
    assert all(status < 400 for _, status in sent[1:])


async def test_a_revoked_installation_token_is_replaced_after_githubs_401(sim: Sim) -> None:
    gh = provider(sim)
    await gh.pending_jobs()
    await sim.post("/_sim/apps/revoke")

    with pytest.raises(ProviderAuthError):
        await gh.pending_jobs()  # the one call that meets the revoked token fails loudly
    assert await gh.pending_jobs() == []  # the next one fetched a new token
    assert (await sim.state())["token_exchanges"] == 2


@pytest.mark.parametrize(
    ("key", "installation", "why"),
    [
        (app_key_pair()[0], INSTALLATION, "a key that is not the App's"),
        (PRIVATE_KEY, 5, "an installation the App does not have"),
    ],
)
async def test_a_wrong_app_credential_is_an_auth_error_and_nothing_else_is_sent(
    sim: Sim, key: str, installation: int, why: str
) -> None:
    gh = provider(sim, key=key, installation=installation)
    with pytest.raises(ProviderAuthError, match="installation token|JSON web token"):
        await gh.pending_jobs()
    sent = sim.api_requests()
    assert sent and all("/access_tokens" in path for path, _ in sent), why


def test_a_token_configured_daemon_never_imports_pygithub() -> None:
    """PyGithub costs ~14 MiB of RSS at import; only an App configuration needs it."""
    code = textwrap.dedent(
        """
        import sys
        import orchestrator.app
        from providers.base import GitHubOptions
        from providers.github import GitHubProvider
        GitHubProvider(GitHubOptions(name="g", token="ghp_x", instance_id="i", repos=("o/r",)))
        assert "github" not in sys.modules, sorted(m for m in sys.modules if m.startswith("github"))
        """
    )
    done = subprocess.run(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
