"""The runner images' shell scripts, without Docker: shellcheck on every script, and each
entrypoint run on the host (under sh, busybox sh and bash) against stub runner binaries,
checking the duties in docs/runner-contract.md."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: One entrypoint for both images (and the test image), built with runner-image/ as context.
ENTRYPOINT = ROOT / "runner-image" / "entrypoint.sh"
SCRIPTS = [
    ENTRYPOINT,
    ROOT / "scripts" / "build-test-image.sh",
    *sorted((ROOT / "scripts" / "test-image").iterdir()),
]
SECRET = "glrt-unit-secret"

SHELLS = [
    pytest.param(["sh"], id="sh"),
    pytest.param(["busybox", "sh"], id="busybox-sh"),
    pytest.param(["bash", "--posix"], id="bash"),
]

# A stub runner: records what it got, then exits, or waits for SIGTERM.
STUB = textwrap.dedent(
    """\
    #!/bin/sh
    {
        echo "args=$*"
        echo "token=${CI_SERVER_TOKEN:-}"
        echo "reg=${ACTIONS_RUNNER_INPUT_TOKEN:-}"
        echo "jit_env=${ACTIONS_RUNNER_INPUT_JITCONFIG:-}"
        echo "file_env=${RUNNER_CREDENTIAL_FILE:-}"
    } >"$STUB_OUT"
    case ${STUB_MODE:-exit} in
        exit) exit "${STUB_EXIT:-0}" ;;
        wait)
            trap 'echo "got TERM" >>"$STUB_OUT"; exit 7' TERM
            touch "$STUB_OUT.ready"
            while :; do sleep 0.05; done
            ;;
    esac
    """
)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    first = script.read_text().splitlines()[0]
    shell = "bash" if "bash" in first else "sh"
    result = subprocess.run(
        ["shellcheck", "-x", "-s", shell, script.name],
        cwd=script.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def stubs(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gitlab-runner", "run.sh", "config.sh"):
        path = bin_dir / name
        path.write_text(STUB)
        path.chmod(0o755)
    return bin_dir


def _env(stubs: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "STUB_OUT": str(stubs.parent / "out"),
        "HOME": str(stubs.parent),
    }
    env.update(extra)
    return env


def _record(stubs: Path) -> dict[str, str]:
    lines = (stubs.parent / "out").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line) | {"_lines": "\n".join(lines)}


def _entrypoint(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run an entrypoint with the stubs' environment; its outcome is for the test to judge."""
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20, check=False)


def _needs(shell: list[str]) -> None:
    if shutil.which(shell[0]) is None:
        pytest.skip(f"{shell[0]} not installed")


@pytest.mark.parametrize("shell", SHELLS)
def test_credential_from_file_is_exported_and_deleted(
    shell: list[str], stubs: Path, tmp_path: Path
) -> None:
    _needs(shell)
    cred = tmp_path / "credential"
    cred.write_text(SECRET)
    cred.chmod(0o444)
    env = _env(stubs, RUNNER_CREDENTIAL_FILE=str(cred), RUNNER_CREDENTIAL_ENV="CI_SERVER_TOKEN")
    result = _entrypoint(
        [*shell, str(ENTRYPOINT), "gitlab-runner", "run-single", "--max-builds", "1"], env
    )
    assert result.returncode == 0, result.stderr
    got = _record(stubs)
    assert got["token"] == SECRET
    assert got["args"] == "run-single --max-builds 1"
    assert got["file_env"] == ""  # not passed on
    assert not cred.exists()
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_credential_from_env_is_left_alone(shell: list[str], stubs: Path) -> None:
    _needs(shell)
    env = _env(stubs, CI_SERVER_TOKEN=SECRET, RUNNER_CREDENTIAL_ENV="CI_SERVER_TOKEN")
    result = _entrypoint([*shell, str(ENTRYPOINT), "gitlab-runner", "run-single"], env)
    assert result.returncode == 0, result.stderr
    assert _record(stubs)["token"] == SECRET


@pytest.mark.parametrize("shell", SHELLS)
def test_exit_code_propagates(shell: list[str], stubs: Path) -> None:
    _needs(shell)
    result = _entrypoint([*shell, str(ENTRYPOINT), "gitlab-runner"], _env(stubs, STUB_EXIT="42"))
    assert result.returncode == 42


@pytest.mark.parametrize("shell", SHELLS)
def test_bad_credential_env_name_is_refused(shell: list[str], stubs: Path, tmp_path: Path) -> None:
    _needs(shell)
    cred = tmp_path / "credential"
    cred.write_text(SECRET)
    result = _entrypoint(
        [*shell, str(ENTRYPOINT), "gitlab-runner"],
        _env(stubs, RUNNER_CREDENTIAL_FILE=str(cred), RUNNER_CREDENTIAL_ENV="X;rm -rf"),
    )
    assert result.returncode == 64
    assert "not a valid variable name" in result.stderr
    assert not (stubs.parent / "out").exists()


def _start_and_signal(
    command: list[str], env: dict[str, str], stubs: Path, sig: int
) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ready = stubs.parent / "out.ready"
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "stub never became ready"
        time.sleep(0.02)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=10)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_sigterm_is_forwarded_and_exit_code_kept(shell: list[str], sig: int, stubs: Path) -> None:
    _needs(shell)
    result = _start_and_signal(
        [*shell, str(ENTRYPOINT), "gitlab-runner", "run-single"],
        _env(stubs, STUB_MODE="wait"),
        stubs,
        sig,
    )
    assert result.returncode == 7, result.stderr
    assert "got TERM" in _record(stubs)["_lines"]


def _argv_of_every_process() -> list[str]:
    """The command line of every process on this machine, as ``ps`` would show it."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            continue
    return lines


@pytest.mark.parametrize("shell", [*SHELLS, pytest.param(["bash"], id="bash-native")])
def test_github_jitconfig_reaches_the_runner_by_env_never_by_argv(
    shell: list[str], stubs: Path, tmp_path: Path
) -> None:
    """The runner reads ACTIONS_RUNNER_INPUT_JITCONFIG itself (and removes it from its
    environment); a `run.sh --jitconfig <secret>` would show the secret to every user of
    the host in `ps`. While the runner runs, no process's argv holds the JIT config."""
    _needs(shell)
    jit = "eyJqaXQiOiAi" + secrets.token_hex(12)  # unique: a hit cannot be another process
    cred = tmp_path / "credential"
    cred.write_text(jit)
    env = _env(
        stubs,
        STUB_MODE="wait",
        RUNNER_CREDENTIAL_FILE=str(cred),
        RUNNER_CREDENTIAL_ENV="ACTIONS_RUNNER_INPUT_JITCONFIG",
    )
    process = subprocess.Popen(
        [*shell, str(ENTRYPOINT), str(stubs / "run.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = stubs.parent / "out.ready"
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "stub never became ready"
            time.sleep(0.02)
        leaking = [line for line in _argv_of_every_process() if jit in line]
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=10)
    assert leaking == [], "the JIT config is on a command line"
    got = _record(stubs)
    assert got["jit_env"] == jit  # delivered by the environment
    assert got["args"] == ""
    assert not cred.exists()
    assert jit not in stdout + stderr


def test_github_explicit_jitconfig_is_kept(stubs: Path) -> None:
    result = _entrypoint(
        ["sh", str(ENTRYPOINT), "run.sh", "--jitconfig", "given"],
        _env(stubs, ACTIONS_RUNNER_INPUT_JITCONFIG="from-env"),
    )
    assert result.returncode == 0, result.stderr
    assert _record(stubs)["args"] == "--jitconfig given"


def test_github_registration_token_for_config_sh(stubs: Path, tmp_path: Path) -> None:
    """Reusable runners: the token lands in ACTIONS_RUNNER_INPUT_TOKEN for config.sh, and
    run.sh gets no --jitconfig."""
    cred = tmp_path / "credential"
    cred.write_text("REGTOKEN")
    env = _env(
        stubs, RUNNER_CREDENTIAL_FILE=str(cred), RUNNER_CREDENTIAL_ENV="ACTIONS_RUNNER_INPUT_TOKEN"
    )
    result = _entrypoint(
        ["sh", str(ENTRYPOINT), "/bin/sh", "-c", 'config.sh --url "$1"', "sh", "http://x"],
        env,
    )
    assert result.returncode == 0, result.stderr
    got = _record(stubs)
    assert got["reg"] == "REGTOKEN"
    assert got["args"] == "--url http://x"


@pytest.mark.parametrize("shell", SHELLS)
def test_credential_from_stdin_is_exported_and_the_runner_gets_end_of_file(
    shell: list[str], stubs: Path
) -> None:
    """Stdin delivery: one line from stdin, exported under RUNNER_CREDENTIAL_ENV; the
    runner sees neither the switch nor anything left on stdin."""
    _needs(shell)
    env = _env(stubs, RUNNER_CREDENTIAL_STDIN="1", RUNNER_CREDENTIAL_ENV="CI_SERVER_TOKEN")
    script = 'gitlab-runner "$@"; echo "stdin_switch=${RUNNER_CREDENTIAL_STDIN:-}" >>"$STUB_OUT"'
    result = subprocess.run(
        [*shell, str(ENTRYPOINT), "sh", "-c", script, "sh", "run-single"],
        input=SECRET + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    got = _record(stubs)
    assert got["token"] == SECRET
    assert got["args"] == "run-single"
    assert got["stdin_switch"] == ""
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_no_credential_on_stdin_exits_65_without_running_the_runner(
    shell: list[str], stubs: Path
) -> None:
    """The daemon died (or its start failed) before writing: stdin ends empty."""
    _needs(shell)
    result = subprocess.run(
        [*shell, str(ENTRYPOINT), "gitlab-runner", "run-single"],
        input="",
        env=_env(stubs, RUNNER_CREDENTIAL_STDIN="1", RUNNER_CREDENTIAL_ENV="CI_SERVER_TOKEN"),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 65
    assert "no credential on stdin" in result.stderr
    assert not (stubs.parent / "out").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_stdin_that_never_ends_does_not_block_the_entrypoint_forever(
    shell: list[str], stubs: Path
) -> None:
    """A container started without the daemon's attach keeps stdin open and silent: the
    read gives up after RUNNER_CREDENTIAL_TIMEOUT seconds (60 by default)."""
    _needs(shell)
    env = _env(
        stubs,
        RUNNER_CREDENTIAL_STDIN="1",
        RUNNER_CREDENTIAL_ENV="CI_SERVER_TOKEN",
        RUNNER_CREDENTIAL_TIMEOUT="1",
    )
    silent = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE)
    try:
        result = subprocess.run(
            [*shell, str(ENTRYPOINT), "gitlab-runner", "run-single"],
            stdin=silent.stdout,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    finally:
        silent.kill()
        silent.wait()
    assert result.returncode == 65
    assert not (stubs.parent / "out").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_stdin_mode_refuses_a_bad_credential_env_name(shell: list[str], stubs: Path) -> None:
    _needs(shell)
    result = subprocess.run(
        [*shell, str(ENTRYPOINT), "run.sh"],
        input=SECRET + "\n",
        env=_env(stubs, RUNNER_CREDENTIAL_STDIN="1", RUNNER_CREDENTIAL_ENV="X;rm -rf"),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 64
    assert SECRET not in result.stdout + result.stderr
    assert not (stubs.parent / "out").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_no_command_is_refused_rather_than_guessed(shell: list[str], stubs: Path) -> None:
    """The daemon always passes the command; the images' CMD covers a hand-run container."""
    _needs(shell)
    result = _entrypoint([*shell, str(ENTRYPOINT)], _env(stubs))
    assert result.returncode == 64
    assert "no command given" in result.stderr


@pytest.mark.parametrize("kind", ["gitlab", "github"])
def test_both_images_copy_the_one_shared_entrypoint(kind: str) -> None:
    """One file, so the two images cannot drift apart: each Dockerfile copies it from its
    build context, runner-image/, and its directory holds no entrypoint of its own."""
    dockerfile = (ROOT / "runner-image" / kind / "Dockerfile").read_text()
    assert "COPY entrypoint.sh /usr/local/bin/ro-entrypoint" in dockerfile
    assert f"-f runner-image/{kind}/Dockerfile" in dockerfile  # the documented build
    assert not (ROOT / "runner-image" / kind / "entrypoint.sh").exists()
    assert 'ENTRYPOINT ["/usr/local/bin/ro-entrypoint"]' in dockerfile
    assert "\nCMD [" in dockerfile
