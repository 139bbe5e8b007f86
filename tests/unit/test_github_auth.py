"""Installation tokens of a GitHub App: fetched once, renewed before they expire.

Single calls, so ``responses`` stands in for GitHub; the clock is the test's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.base import GitHubApp
from providers.github.auth import RENEW_BEFORE_S, AppInstallationAuth, MalformedTokenAnswer

API = "https://api.github.test"
EXCHANGE = f"{API}/app/installations/9/access_tokens"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _answer(token: str, expires: datetime) -> responses.Response:
    body = {"token": token, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return responses.Response("POST", EXCHANGE, json=body, status=201)


def _auth(clock: Clock) -> AppInstallationAuth:
    session = requests.Session()
    return AppInstallationAuth(
        GitHubApp(app_id="123", installation_id=9, private_key=PEM),
        api_url=API,
        session=lambda: session,
        now=clock,
    )


@responses.activate
def test_the_token_is_fetched_once_and_renewed_shortly_before_it_expires() -> None:
    clock = Clock()
    responses.add(_answer("ghs_first", T0 + timedelta(hours=1)))
    responses.add(_answer("ghs_second", T0 + timedelta(hours=2)))
    auth = _auth(clock)

    assert auth.token() == "ghs_first"
    clock.now = T0 + timedelta(hours=1) - timedelta(seconds=RENEW_BEFORE_S + 1)
    assert auth.token() == "ghs_first"
    clock.now += timedelta(seconds=2)  # inside the renewal window
    assert auth.token() == "ghs_second"
    assert len(responses.calls) == 2


@responses.activate
def test_the_exchange_is_signed_by_the_apps_key_with_a_short_lifetime() -> None:
    responses.add(_answer("ghs_x", T0 + timedelta(hours=1)))
    _auth(Clock()).token()

    sent = responses.calls[0].request
    scheme, _, token = str(sent.headers["Authorization"]).partition(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, KEY.public_key(), algorithms=["RS256"])
    assert claims["iss"] == "123"
    assert claims["exp"] - claims["iat"] <= 660


@responses.activate
def test_invalidate_makes_the_next_request_fetch_a_new_token() -> None:
    responses.add(_answer("ghs_first", T0 + timedelta(hours=1)))
    responses.add(_answer("ghs_second", T0 + timedelta(hours=1)))
    auth = _auth(Clock())
    auth.token()
    auth.invalidate()
    assert auth.token() == "ghs_second"


@pytest.mark.parametrize(
    "body",
    [{"token": "ghs_x"}, {"expires_at": "2026-12-01T13:00:00Z"}, ["ghs_x"], "not json"],
)
@responses.activate
def test_a_malformed_token_answer_is_a_clear_error(body: object) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    responses.add("POST", EXCHANGE, body=text, status=201)
    with pytest.raises(MalformedTokenAnswer):
        _auth(Clock()).token()
