"""``ssh://`` Docker hosts: a private unix socket whose every connection is one
``ssh … docker system dial-stdio`` process, as the Docker CLI does for ssh contexts.

Why not the docker SDK's own ssh transport: its module imports paramiko when the SDK is
imported, whether or not any host is reached over ssh (paramiko and cryptography cost every
daemon about 18 MiB of resident memory, docs/benchmarks.md's idle footprint), and without
paramiko installed the SDK refuses ``ssh://`` altogether, even with ``use_ssh_client``.
Shelling out to the system ``ssh`` is also what operators expect: their ssh config,
agent, known hosts and ProxyJump apply. The client is an ordinary ``unix://`` client of
the relay's socket, so every SDK feature (the event stream, the hijacked attach
connection of stdin delivery) works unchanged.

Each accepted connection starts ``ssh -o BatchMode=yes -o ConnectTimeout=… [-l user]
[-p port] -- host docker system dial-stdio`` and copies bytes both ways. End of stream
on one side is passed on as a half-close (ssh's stdin closed, or the socket's write side
shut), which ``dial-stdio`` turns into a half-close towards the remote engine: that is
how stdin delivery's end of file reaches the container. The last lines ssh wrote to
stderr are kept (:attr:`SshRelay.last_error`) so a refused login reads as what it is.
The socket lives in a fresh 0700 directory and is removed, with every ssh process, by
:meth:`SshRelay.close`.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from typing import IO

import structlog

log = structlog.get_logger("orchestrator.runtime.ssh")

#: Bytes per read on either side of a relayed connection.
CHUNK = 65536
#: Seconds an ssh process may take to exit after its connection ended, before SIGKILL.
EXIT_GRACE_S = 5.0


def ssh_command(url: str, connect_timeout_s: float) -> list[str]:
    """The ``ssh`` argv that reaches the engine behind ``ssh://[user@]host[:port]``.

    ``BatchMode``: a daemon has nobody to type a password or confirm a host key, so ssh
    fails at once instead of waiting on a terminal. ``ConnectTimeout`` bounds a host
    that does not answer. Anything else comes from the operator's ssh config.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise ValueError(f"not an ssh://[user@]host[:port] url: {url!r}")
    argv = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={max(1, round(connect_timeout_s))}",
    ]
    if parts.username:
        argv += ["-l", urllib.parse.unquote(parts.username)]
    if parts.port:
        argv += ["-p", str(parts.port)]
    return [*argv, "--", parts.hostname, "docker system dial-stdio"]


class SshRelay:
    """A unix socket in front of ``ssh … docker system dial-stdio`` (see module doc)."""

    def __init__(self, url: str, connect_timeout_s: float) -> None:
        self.argv = ssh_command(url, connect_timeout_s)
        self.url = url
        self._dir = tempfile.mkdtemp(prefix="ro-ssh-")
        self.path = os.path.join(self._dir, "docker.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(32)
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        self._errors: collections.deque[str] = collections.deque(maxlen=3)
        self._acceptor = threading.Thread(target=self._accept, name=f"ssh-relay {url}", daemon=True)
        self._acceptor.start()

    @property
    def base_url(self) -> str:
        return f"unix://{self.path}"

    @property
    def last_error(self) -> str:
        """What ssh last said on stderr (its last lines), '' when it said nothing."""
        with self._lock:
            return " / ".join(self._errors)

    def wait_idle(self, timeout_s: float) -> None:
        """Wait (bounded) until no ssh process of this relay is left running."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._procs:
                    return
            time.sleep(0.02)

    def close(self) -> None:
        """Stop accepting, end every ssh process, remove the socket. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            procs = list(self._procs)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.terminate()
        for proc in procs:
            _reap(proc)
        self._acceptor.join(EXIT_GRACE_S)
        shutil.rmtree(self._dir, ignore_errors=True)

    # --- per connection ---------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the listener was closed: the relay is shutting down
                return
            threading.Thread(
                target=self._serve, args=(conn,), name="ssh-relay conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # the daemon's SIGINT is not ssh's
            )
        except OSError as exc:  # no ssh binary, or it cannot be run
            self._said(f"cannot run ssh: {exc}")
            conn.close()
            return
        with self._lock:
            if self._closed:
                proc.kill()
            self._procs.add(proc)
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        pumps = [
            threading.Thread(target=_to_ssh, args=(conn, proc.stdin), daemon=True),
            threading.Thread(target=_from_ssh, args=(proc.stdout, conn), daemon=True),
            threading.Thread(target=self._stderr, args=(proc.stderr,), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        pumps[1].join()  # ssh's stdout ended: the remote side is done
        pumps[0].join(EXIT_GRACE_S)  # the client has usually closed by then
        conn.close()  # ends _to_ssh if the client had not
        _reap(proc)
        pumps[2].join(EXIT_GRACE_S)
        with self._lock:
            self._procs.discard(proc)
        if proc.returncode not in (0, None) and not self._closed:
            log.debug("docker_host.ssh_exited", url=self.url, code=proc.returncode)

    def _stderr(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in stream:
                text = line.decode(errors="replace").strip()
                if text:
                    self._said(text)

    def _said(self, text: str) -> None:
        with self._lock:
            self._errors.append(text[:300])
        log.debug("docker_host.ssh_said", url=self.url, line=text[:300])


def _to_ssh(conn: socket.socket, stdin: IO[bytes]) -> None:
    """Client -> ssh. At the client's end of stream close ssh's stdin (a half-close)."""
    try:
        while data := conn.recv(CHUNK):
            stdin.write(data)
            stdin.flush()
    except (OSError, ValueError):  # either side gone (ValueError: stdin closed)
        pass
    finally:
        with contextlib.suppress(OSError, ValueError):
            stdin.close()


def _from_ssh(stdout: IO[bytes], conn: socket.socket) -> None:
    """ssh -> client. At ssh's end of stream shut the socket's write side."""
    try:
        while data := os.read(stdout.fileno(), CHUNK):
            conn.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError, ValueError):
            stdout.close()


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(EXIT_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
