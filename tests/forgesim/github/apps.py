"""GitHub Apps in the simulator: JWT-authenticated token exchange, installation tokens.

As GitHub documents ("Generating a JSON Web Token (JWT) for a GitHub App", "Generating
an installation access token"): ``POST /app/installations/{id}/access_tokens`` takes
``Authorization: Bearer <JWT>`` signed RS256 with the App's private key, ``iss`` the App
id, ``exp`` at most 10 minutes after ``iat``; it answers ``201`` with ``token`` and
``expires_at`` (one hour later). A bad JWT is ``401`` "A JSON web token could not be
decoded"; an unknown installation is ``404``. The token then authorises the API like a
PAT until it expires or is revoked.

Control: ``POST /_sim/apps`` ``{"app_id", "public_key" (PEM), "installation_id",
"token_ttl"?}`` registers an App; ``POST /_sim/apps/revoke`` revokes every installation
token issued so far (the next request with one is ``401``).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

import jwt
from aiohttp import web

from tests.forgesim.github import shapes
from tests.forgesim.github.model import App
from tests.forgesim.github.state import SIM, GitHubSim

MAX_JWT_LIFETIME_S = 600 + 60  # GitHub: exp no more than 10 min ahead (iat may be back-dated)


def installation_token_valid(sim: GitHubSim, token: str) -> bool:
    expires = sim.installation_tokens.get(token)
    return expires is not None and time.time() < expires


def _app_of_jwt(sim: GitHubSim, authorization: str) -> App | None:
    if not authorization.startswith("Bearer "):
        return None
    token = authorization.removeprefix("Bearer ")
    try:
        issuer = str(jwt.decode(token, options={"verify_signature": False}).get("iss"))
        app = sim.apps.get(issuer)
        if app is None:
            return None
        claims = jwt.decode(
            token, app.public_key, algorithms=["RS256"], options={"require": ["iat", "exp"]}
        )
    except jwt.PyJWTError:
        return None
    if float(claims["exp"]) - float(claims["iat"]) > MAX_JWT_LIFETIME_S:
        return None
    return app


async def access_tokens(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    app = _app_of_jwt(sim, request.headers.get("Authorization", ""))
    if app is None:
        return shapes.error(401, "A JSON web token could not be decoded")
    if int(request.match_info["installation_id"]) != app.installation_id:
        return shapes.error(404, "Not Found")
    app.exchanges += 1
    token = f"ghs_{secrets.token_hex(18)}"
    expires = time.time() + app.token_ttl_s
    sim.installation_tokens[token] = expires
    return web.json_response(
        {
            "token": token,
            "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": {"administration": "write", "actions": "read"},
            "repository_selection": "all",
        },
        status=201,
    )


async def control_register_app(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    try:
        body = await request.json()
        app = App(
            app_id=str(body["app_id"]),
            public_key=str(body["public_key"]),
            installation_id=int(body["installation_id"]),
            token_ttl_s=float(body.get("token_ttl", 3600)),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return web.json_response(
            {"error": "want {app_id, public_key, installation_id, token_ttl?}"}, status=400
        )
    sim.apps[app.app_id] = app
    return web.json_response({"app_id": app.app_id})


async def control_revoke_tokens(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    revoked = len(sim.installation_tokens)
    sim.installation_tokens.clear()
    return web.json_response({"revoked": revoked})
