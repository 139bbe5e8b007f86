"""A fresh GitHub App key pair (PEM strings) for tests and the bench: one place."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


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
