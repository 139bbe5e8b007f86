"""GitHub Apps in the simulator: JWT-authenticated token exchange, installation tokens.

As GitHub documents ("Generating a JSON Web Token (JWT) for a GitHub App", "Generating
an installation access token") and its OpenAPI description (``apps/create-installation-
access-token``, in ``tests/specs/github-actions-runners.openapi.yaml``):
``POST /app/installations/{id}/access_tokens`` takes ``Authorization: Bearer <JWT>``
signed RS256 with the App's private key, ``iss`` the App id, ``exp`` at most 10 minutes
after ``iat``; it answers ``201`` with an ``installation-token`` (``token``,
``expires_at`` one hour later, ``permissions``, ``repository_selection``). A bad JWT is
``401`` "A JSON web token could not be decoded"; an unknown installation is ``404``.

The optional JSON body narrows the token: ``permissions`` (each at most what the App was
granted, :data:`GRANTED`) and ``repositories`` (names) or ``repository_ids`` of the
simulator's repositories. The answer then reports that narrower grant
(``repository_selection: selected``); a body that is not of the documented shape, asks for
more than the grant or names an unknown repository is ``422`` (``validation-error``). The
simulator reports the narrowing but does not enforce it: the token then authorises the
API like a PAT until it expires or is revoked.

Control: ``POST /_sim/apps`` ``{"app_id", "public_key" (PEM), "installation_id",
"token_ttl"?}`` registers an App; ``POST /_sim/apps/revoke`` revokes every installation
token issued so far (the next request with one is ``401``).
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import jwt
from aiohttp import web

from tests.forgesim.github import shapes
from tests.forgesim.github.model import App
from tests.forgesim.github.state import SIM, GitHubSim

MAX_JWT_LIFETIME_S = 600 + 60  # GitHub: exp no more than 10 min ahead (iat may be back-dated)

#: What every simulated App installation was granted (an autoscaler's needs).
GRANTED = {"administration": "write", "actions": "read"}
_LEVELS = {"read": 1, "write": 2, "admin": 3}
NOT_GRANTED = "The permissions requested are not granted to this installation."
NOT_ACCESSIBLE = (
    "There is at least one repository that does not exist or is not accessible to the "
    "parent installation."
)


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


def _invalid(detail: str) -> web.Response:
    return shapes.error(422, f"Invalid request.\n\n{detail}")


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value
    )


def _narrowing(sim: GitHubSim, raw: bytes) -> tuple[dict[str, str], bool] | web.Response:
    """``(permissions, selected)`` the request body asks for, or the 422 refusing it."""
    if not raw.strip():
        return dict(GRANTED), False
    try:
        body = json.loads(raw)
    except ValueError:
        return _invalid("The request body is not valid JSON.")
    if not isinstance(body, dict):
        return _invalid(f"{json.dumps(body)} is not an object.")
    permissions = body.get("permissions", GRANTED)
    if not isinstance(permissions, dict) or not all(
        isinstance(v, str) for v in permissions.values()
    ):
        return _invalid("For 'properties/permissions', the value is not an object of strings.")
    for name, level in permissions.items():
        granted = GRANTED.get(name)
        if level not in _LEVELS or granted is None or _LEVELS[level] > _LEVELS[granted]:
            return shapes.error(422, NOT_GRANTED)
    names, ids = body.get("repositories"), body.get("repository_ids")
    if names is not None and not _is_list_of(names, str):
        return _invalid("For 'properties/repositories', the value is not an array of strings.")
    if ids is not None and not _is_list_of(ids, int):
        return _invalid("For 'properties/repository_ids', the value is not an array of integers.")
    known_names = {repo.name for repo in sim.repos.values()}
    known_ids = {repo.id for repo in sim.repos.values()}
    if not set(names or ()) <= known_names or not set(ids or ()) <= known_ids:
        return shapes.error(422, NOT_ACCESSIBLE)
    return dict(permissions), bool(names or ids)


async def access_tokens(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    app = _app_of_jwt(sim, request.headers.get("Authorization", ""))
    if app is None:
        return shapes.error(401, "A JSON web token could not be decoded")
    if int(request.match_info["installation_id"]) != app.installation_id:
        return shapes.error(404, "Not Found")
    narrowing = _narrowing(sim, await request.read())
    if isinstance(narrowing, web.Response):
        return narrowing
    permissions, selected = narrowing
    app.exchanges += 1
    token = f"ghs_{secrets.token_hex(18)}"
    expires = time.time() + app.token_ttl_s
    sim.installation_tokens[token] = expires
    return web.json_response(
        {
            "token": token,
            "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": permissions,
            "repository_selection": "selected" if selected else "all",
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
