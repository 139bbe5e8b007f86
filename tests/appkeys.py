"""GitHub App helpers for tests and the bench, in one place: a fresh key pair (PEM
strings), and a GitHub provider that authenticates as an App against a simulator."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.base import GitHubApp, GitHubOptions
from providers.github import GitHubProvider


def app_key_pair(*, traditional: bool = False) -> tuple[str, str]:
    """``(private PEM, public PEM)``; ``traditional`` gives the ``BEGIN RSA PRIVATE KEY``
    form GitHub's download uses, else PKCS#8."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL
        if traditional
        else serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def app_provider(
    url: str, *, app_id: str, installation_id: int, private_key: str, instance_id: str
) -> GitHubProvider:
    """A provider watching ``octo/app`` on the simulator at ``url``, as an App installation."""
    return GitHubProvider(
        GitHubOptions(
            name="github",
            token="",
            instance_id=instance_id,
            api_url=f"{url}/api/v3",
            web_url=url,
            repos=("octo/app",),
            app=GitHubApp(app_id=app_id, installation_id=installation_id, private_key=private_key),
        )
    )
