"""``tcp://`` Docker hosts with mutual TLS, against this engine behind a TLS endpoint.

The README promises ``url: tcp://host:2376`` with ``tls_ca``/``tls_cert``/``tls_key``: the
way a remote engine is exposed with ``dockerd --tlsverify``. Here ``socat`` (Debian's,
built with OpenSSL) listens on loopback with a server certificate, demands a client
certificate from the test's CA and forwards to this engine's socket; certificates are
made with the ``openssl`` command for each run. Over TLS the attach connection of stdin
delivery is the TLS socket itself (not a ``SocketIO``), so this is the test that the
credential write and the half-close work there too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config import DockerHostConfig
from orchestrator.runtime.docker_engine import DockerRuntime
from tests.docker.conftest import DOCKER_URL, Events, cleanup, new_instance_id
from tests.docker.helpers import SECRET, listening_server, logs_until, make_spec
from tests.e2e.harness import free_port

pytestmark = pytest.mark.docker


@dataclasses.dataclass
class TlsEndpoint:
    port: int
    certs: Path

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def host(self, *, ca: str = "ca.pem", **overrides: object) -> DockerHostConfig:
        base: dict[str, object] = {
            "name": "remote",
            "url": self.url,
            "arch": "amd64",
            "tls_ca": self.certs / ca,
            "tls_cert": self.certs / "client-cert.pem",
            "tls_key": self.certs / "client-key.pem",
        }
        base.update(overrides)
        return DockerHostConfig(**base)  # type: ignore[arg-type]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> None:
    _openssl("genrsa", "-out", f"{name}-key.pem", "2048", cwd=d)
    _openssl(
        "req", "-x509", "-new", "-key", f"{name}-key.pem", "-days", "2",
        "-subj", f"/CN={name}", "-out", f"{name}.pem", cwd=d,
    )  # fmt: skip


def _make_cert(d: Path, name: str, ca: str, ext: str) -> None:
    _openssl("genrsa", "-out", f"{name}-key.pem", "2048", cwd=d)
    _openssl(
        "req",
        "-new",
        "-key",
        f"{name}-key.pem",
        "-subj",
        f"/CN={name}",
        "-out",
        f"{name}.csr",
        cwd=d,
    )
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
        "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}-cert.pem",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEndpoint]:
    socat = shutil.which("socat")
    if socat is None or shutil.which("openssl") is None:
        pytest.skip("NOT RUN: socat or openssl missing (apt-get install socat openssl)")
    if not DOCKER_URL.startswith("unix://"):
        pytest.skip("NOT RUN: the TLS endpoint forwards to a unix socket engine")
    d = tmp_path_factory.mktemp("tls")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")  # trusted by nobody here
    _make_cert(d, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _make_cert(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    port = free_port()
    argv = [
        socat,
        f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,"
        f"cert={d / 'server-cert.pem'},key={d / 'server-key.pem'},"
        f"cafile={d / 'ca.pem'},verify=1",
        f"UNIX-CONNECT:{DOCKER_URL.removeprefix('unix://')}",
    ]
    with listening_server(argv, port, d / "socat.log", "socat"):
        yield TlsEndpoint(port, d)


@pytest.fixture
def foreign_ca_bundle(tls_endpoint: TlsEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CA bundle in the environment that does not trust the endpoint, as corporate and
    CI machines set one: requests would let it replace the host's ``tls_ca``
    (psf/requests#3829) unless the runtime pins the host's own."""
    bundle = str(tls_endpoint.certs / "other-ca.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    monkeypatch.setenv("CURL_CA_BUNDLE", bundle)


@pytest.mark.usefixtures("foreign_ca_bundle")
async def test_a_runner_on_a_tls_host_gets_its_credential_over_stdin(
    tls_endpoint: TlsEndpoint, events: Events
) -> None:
    """Create, stdin delivery over the TLS socket, events, logs, list, stop and remove,
    with a CA bundle in the environment that would refuse the host."""
    rt = DockerRuntime(new_instance_id(), [tls_endpoint.host()])
    await rt.start(events)
    try:
        (host,) = rt.hosts()
        assert host.ok, host.error
        digest = hashlib.sha256(SECRET.encode()).hexdigest()
        spec = make_spec(
            rt, command=("sh", "-c", 'printf %s "$CI_SERVER_TOKEN" | sha256sum; exec sleep 30')
        )
        info = await rt.start_container(await rt.create(spec))
        await events.wait_for(info.id, "start", timeout=15)
        logs = await logs_until(rt, "remote", info.id, digest)
        assert digest in logs, logs  # the whole credential, then end of file (sha256sum ended)
        (listed,) = (await rt.list()).containers
        assert listed.id == info.id and listed.running
        await rt.stop("remote", info.id, timeout_s=2)
        await rt.remove("remote", info.id)
        assert (await rt.list()).containers == ()
    finally:
        await cleanup(rt)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # wanted here
async def test_tls_verify_off_is_honoured_whatever_bundle_the_environment_names(
    tls_endpoint: TlsEndpoint, events: Events, foreign_ca_bundle: None
) -> None:
    rt = DockerRuntime(new_instance_id(), [tls_endpoint.host(tls_ca=None, tls_verify=False)])
    try:
        await rt.start(events)
        assert rt.hosts()[0].ok, rt.hosts()[0].error
    finally:
        await cleanup(rt)  # it connected: the instance network goes too


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ca": "other-ca.pem"}, "certificate verify failed"),  # the server is not trusted
        ({"tls_cert": None, "tls_key": None}, ""),  # no client certificate: refused
    ],
    ids=["unknown-server-ca", "no-client-certificate"],
)
async def test_a_tls_host_that_cannot_be_trusted_is_down_and_says_why(
    tls_endpoint: TlsEndpoint,
    events: Events,
    overrides: dict[str, object],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # an environment bundle that WOULD trust the server must not rescue a wrong tls_ca
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_endpoint.certs / "ca.pem"))
    host_config = tls_endpoint.host(**overrides)
    rt = DockerRuntime(new_instance_id(), [host_config])
    try:
        await rt.start(events)
        (host,) = rt.hosts()
        assert not host.ok
        assert host.error and expected in host.error, host.error
        assert rt.placeable("linux/amd64", None)  # a reason, not '' (nothing can be placed)
    finally:
        await rt.aclose()


def test_the_certificates_are_what_the_test_says() -> None:
    """Guard for the fixture's own assumption: Debian's socat links OpenSSL."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("NOT RUN: socat missing (apt-get install socat)")
    version = subprocess.run([socat, "-V"], capture_output=True, text=True, check=True).stdout
    assert "WITH_OPENSSL" in version or "#define WITH_OPENSSL 1" in version, version[:500]
    assert os.path.exists("/usr/bin/openssl") or shutil.which("openssl")
