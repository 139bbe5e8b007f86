"""Bad configuration as a careless admin or a hostile pool author writes it.

Every case ends the same way: one line per problem on stderr naming the field (and the real
environment variable), exit 2 for configuration and 1 for the environment, no traceback,
and no secret in any output, not even the one the admin pasted into the wrong variable.
The CLI runs as a real subprocess for a representative subset; the rest goes through
``load_settings`` in-process so hypothesis can try many values per field.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from orchestrator import ceiling as rules
from orchestrator.config import (
    Ceiling,
    ConfigError,
    PoolConfig,
    Settings,
    env_names,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "glpat-Zq8vR2mX4kP9wL7nB3cT"  # shaped like a real GitLab token
RANDOM_SECRET = "s3cr3tVa1ueNoShape9x7q"  # no known shape: 22 random-looking characters
BASE = {"GITLAB_URL": "https://gitlab.example.com", "GITLAB_TOKEN": "glpat-base0123456789ab"}


def _clean_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def _load(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], path: Path | None = None) -> str:
    """'' when the config loads, else the ConfigError text."""
    _clean_env(monkeypatch, env)
    try:
        load_settings(path)
    except ConfigError as exc:
        return str(exc)
    return ""


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    clean.update({"DATA_DIR": str(cwd / "data")}, **env)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_errors(result: subprocess.CompletedProcess[str], code: int, *secrets: str):  # type: ignore[no-untyped-def]
    assert result.returncode == code, (result.returncode, result.stderr)
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    for secret in secrets:
        assert secret not in out, f"secret echoed: {out}"
    lines = result.stderr.strip().splitlines()
    assert lines and all(
        line.startswith(("invalid config: ", "cannot start: ")) for line in lines
    ), result.stderr


# --- 12.3a: a secret in the wrong variable is never echoed; the real variable is named ---

STRING_FIELDS_WITH_RULES = [
    "GITLAB_URL",
    "GITHUB_API_URL",
    "GITHUB_REPO",
    "INSTANCE_ID",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "SHUTDOWN_MODE",
    "CREDENTIAL_DELIVERY",
    "RUNNER_PLATFORM",
    "RUNNER_MEMORY",
    "DOCKER_HOST",
    "MAX_RUNNERS",
    "POLL_INTERVAL",
    "HTTP_PORT",
    "MANAGEMENT_ENABLED",
]


@pytest.mark.parametrize("name", STRING_FIELDS_WITH_RULES)
@pytest.mark.parametrize("secret", [TOKEN, RANDOM_SECRET], ids=["token-shape", "random"])
def test_a_secret_in_the_wrong_variable_is_refused_without_echo(
    name: str, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = dict(BASE, **{name: secret})
    if name == "GITHUB_REPO":
        env["GITHUB_TOKEN"] = "ghp_base0123456789abcdef"
    message = _load(monkeypatch, env)
    assert message, f"{name}={secret[:6]}... was accepted"
    assert secret not in message
    assert f"(env {name})" in message, message  # the variable that exists, not "env URL"
    assert "env URL" not in message and "env REPOS" not in message


def test_every_env_variable_with_a_secret_never_echoes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All of them, table-driven: accepted or refused, the secret never shows."""
    for name in env_names():
        for secret in (TOKEN, RANDOM_SECRET):
            env = dict(BASE, **{name: secret})
            message = _load(monkeypatch, env)
            assert secret not in message, f"{name}: {message}"
            if message:
                assert "invalid config: " in message


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    # paths are shown when they look like paths (a file name helps); a secret pasted into
    # one is covered by the table-driven test above
    name=st.sampled_from(
        [n for n in env_names() if n not in {"CONFIG_FILE", "DATA_DIR", "STATE_PATH"}]
    ),
    value=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=16, max_size=40
    ).filter(lambda v: any(c.isdigit() for c in v) and any(c.isalpha() for c in v)),
)
def test_no_random_looking_value_is_ever_echoed(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _load(monkeypatch, dict(BASE, **{name: value}))
    assert value not in message


@pytest.mark.parametrize(
    ("yaml_text", "secret"),
    [
        (f"{TOKEN}: 1\n", TOKEN),  # a token as a key
        (f"pools: [{{name: p, {RANDOM_SECRET}: 1}}]\n", RANDOM_SECRET),
        (f"forges: [{{kind: '{TOKEN}', url: x}}]\n", TOKEN),  # union tag quoted by pydantic
        (f"forges: [{{kind: gitlab, url: '{TOKEN}'}}]\n", TOKEN),
        (f"pools: [{{name: p, forge: '{RANDOM_SECRET}'}}]\n", RANDOM_SECRET),
        (f"pools: [{{name: p, hosts: ['{RANDOM_SECRET}']}}]\n", RANDOM_SECRET),
        (f"docker_hosts: [{{name: a, url: '{TOKEN}'}}]\n", TOKEN),
        (f"log_level: {RANDOM_SECRET}\n", RANDOM_SECRET),
        (f"pools: [{{name: p, cap_add: ['{RANDOM_SECRET}']}}]\n", RANDOM_SECRET.upper()),
    ],
)
def test_yaml_values_and_keys_that_look_secret_are_not_echoed(
    yaml_text: str, secret: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    message = _load(monkeypatch, BASE, path)
    assert message
    assert secret not in message


def test_numbers_are_echoed_because_they_help(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _load(monkeypatch, dict(BASE, MAX_WEBHOOK_BYTES="1e23"))
    assert "max_webhook_bytes (env MAX_WEBHOOK_BYTES)" in message and "1e23" in message


# --- 12.3b: check-config masks pool env values and URL user info ---------------------------


def test_check_config_masks_pool_env_and_url_userinfo(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "forges:\n"
        "  - {kind: gitlab, name: lab, url: 'https://robot:pw-in-url-77@gitlab.example.com'}\n"
        "pools:\n"
        f"  - {{name: p, env: {{NPM_TOKEN: {RANDOM_SECRET}, PLAIN: hello}}}}\n"
        "docker_hosts:\n"
        "  - {name: far, url: 'ssh://deploy:ssh-pw-42@far.example.com'}\n"
    )
    result = cli("--config", str(config), "check-config", env=BASE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for secret in (RANDOM_SECRET, "pw-in-url-77", "ssh-pw-42", "hello", BASE["GITLAB_TOKEN"]):
        assert secret not in result.stdout
    assert "NPM_TOKEN: '**********'" in result.stdout  # the key stays: it says what is set
    assert "https://**********@gitlab.example.com" in result.stdout


def test_masked_config_hides_token_shapes_anywhere(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_settings(runner_image=f"registry.example.com/{TOKEN}:1")
    assert TOKEN not in json.dumps(s.masked())


# --- 12.4: the ceiling holds -------------------------------------------------------------

SOCKET_BINDS = [
    "/var/run/docker.sock:/var/run/docker.sock",
    "/run/docker.sock:/sock",
    "//var//run/docker.sock:/sock",
    "/var/run/../run/docker.sock:/sock",
    "/srv/../var/run/docker.sock:/sock",
    "/var/run:/host-run",
    "/run:/host-run",
    "/:/host",
    "/var:/host-var",
    "/var/lib/docker:/d",
    "/run/containerd/containerd.sock:/c",
    "/run/user/1000/docker.sock:/s",
    "/home/ci/podman.sock:/s",
    "/proc/1/root/run:/r",
    "/proc:/host-proc",
]


@pytest.mark.parametrize("bind", SOCKET_BINDS)
def test_no_path_to_the_docker_socket_passes_the_default_ceiling(
    bind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"pools: [{{name: p, volumes: ['{bind}']}}]\n")
    message = _load(monkeypatch, BASE, path)
    assert "pools[0].volumes[0]" in message


@pytest.mark.parametrize("bind", SOCKET_BINDS)
def test_allowing_host_paths_never_allows_the_socket(
    bind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"pools: [{{name: p, volumes: ['{bind}']}}]\nceiling: {{allowed_host_paths: ['/']}}\n"
    )
    message = _load(monkeypatch, BASE, path)
    assert "ceiling.allow_docker_socket" in message


@pytest.mark.parametrize(
    ("pool", "field"),
    [
        ("network: host", "pools[0].network"),
        ("network: 'container:runner-orchestrator'", "pools[0].network"),
        ("network: bridge", "pools[0].network"),
        ("network: backend-db", "pools[0].network"),
        ("volumes: ['/srv/data:/data']", "pools[0].volumes[0]"),
        ("volumes: ['/etc:/etc:ro']", "pools[0].volumes[0]"),
        ("volumes: ['cache:/cache:rshared']", "pools[0].volumes[0]"),
        ("volumes: ['./relative:/x']", "pools[0].volumes[0]"),
        ("volumes: ['shared:/run/runner-orchestrator']", "pools[0].volumes[0]"),
        ("volumes: ['shared:/var/run']", "pools[0].volumes[0]"),
        ("cap_add: [SYS_ADMIN]", "pools[0].cap_add"),
        ("cap_add: [cap_sys_ptrace]", "pools[0].cap_add"),
        ("cap_add: [ALL]", "pools[0].cap_add"),
        ("privileged: true", "pools[0].privileged"),
        ("docker_socket: true", "pools[0].docker_socket"),
        ("executor_args: ['--docker-privileged']", "pools[0].executor_args[0]"),
        ("executor_args: ['--docker-volumes=/var/run/docker.sock:/s']", "executor_args[0]"),
        ("executor_args: ['--docker-host', 'tcp://172.17.0.1:2375']", "executor_args[0]"),
    ],
)
def test_the_default_ceiling_refuses_what_widens_reach(
    pool: str, field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"pools: [{{name: p, {pool}}}]\n")
    assert field in _load(monkeypatch, BASE, path)


@pytest.mark.parametrize("name", ["host", "bridge", "none"])
def test_network_name_cannot_be_a_docker_builtin(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _load(monkeypatch, dict(BASE, NETWORK_NAME=name))
    assert "network_name (env NETWORK_NAME)" in message


@pytest.mark.parametrize(
    ("pool", "ceiling"),
    [
        ("network: host", "allow_host_network: true"),
        ("network: backend", "allowed_networks: [backend]"),
        ("volumes: ['/srv/cache/x:/x:ro']", "allowed_host_paths: [/srv/cache]"),
        (
            "volumes: ['/var/run/docker.sock:/var/run/docker.sock']",
            "allow_docker_socket: true, allowed_host_paths: [/run]",
        ),
        ("cap_add: [CAP_CHOWN, kill]", "{}"),
        ("volumes: ['cache:/cache', '/scratch']", "{}"),
        ("network: none", "{}"),
        ("user: '1001:1001'", "allow_root: false"),
        ("read_only: true", "require_read_only: true"),
    ],
)
def test_what_the_ceiling_allows_loads(
    pool: str, ceiling: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    body = ceiling if ceiling.startswith("{") else "{" + ceiling + "}"
    path.write_text(f"pools: [{{name: p, {pool}}}]\nceiling: {body}\n")
    assert _load(monkeypatch, BASE, path) == ""


@pytest.mark.parametrize("user", [None, "0", "root", "0:0", "root:ci", " 0"])
def test_root_is_refused_when_the_ceiling_forbids_it(
    user: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    spec = "" if user is None else f", user: '{user}'"
    path.write_text(f"pools: [{{name: p{spec}}}]\nceiling: {{allow_root: false}}\n")
    assert "pools[0].user" in _load(monkeypatch, BASE, path)


@given(
    st.lists(st.sampled_from(["", ".", "..", "var", "run", "docker.sock", "/", "//"]), max_size=8)
)
def test_normalised_host_paths_never_escape_root(parts: list[str]) -> None:
    path = rules.host_path("/".join(parts))
    assert path.startswith("/") and "/../" not in path + "/" and "//" not in path
    assert not path.startswith("/var/run")


# --- 12.5 / 11.3: numbers ----------------------------------------------------------------

FLOAT_FIELDS = [
    name.upper()
    for name, field in Settings.model_fields.items()
    if "float" in str(field.annotation) and name.upper() in env_names()
]


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "1e308", "1e999"])
def test_no_float_setting_takes_a_non_finite_or_absurd_value(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _load(monkeypatch, dict(BASE, **{name: value}))
    assert f"(env {name})" in message, (name, value)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(FLOAT_FIELDS), value=st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_is_either_finite_and_bounded_or_refused(
    name: str, value: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _load(monkeypatch, dict(BASE, **{name: repr(value)}))
    if message:
        assert f"(env {name})" in message
        return
    got = getattr(load_settings(), name.lower())
    assert math.isfinite(got) and 0 <= got <= 7 * 86_400


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"MIN_RUNNERS": "3", "MAX_RUNNERS": "2"}, "MIN_RUNNERS"),
        ({"MIN_RUNNERS": "1", "MAX_RUNNERS": "0"}, "MIN_RUNNERS"),
        ({"POLL_INTERVAL": "1e-9"}, "POLL_INTERVAL"),
        ({"MAX_WEBHOOK_BYTES": "1e23"}, "MAX_WEBHOOK_BYTES"),
        ({"MAX_WEBHOOK_BYTES": "100000000000"}, "MAX_WEBHOOK_BYTES"),
        ({"IDLE_TIMEOUT": "inf"}, "IDLE_TIMEOUT"),
        ({"GC_INTERVAL": "inf"}, "GC_INTERVAL"),
        ({"SHUTDOWN_TIMEOUT": "nan"}, "SHUTDOWN_TIMEOUT"),
        ({"RUNNER_CPUS": "inf"}, "RUNNER_CPUS"),
        ({"MAX_RUNNERS": "99999999"}, "MAX_RUNNERS"),
        ({"DOCKER_HOST": "garbage"}, "DOCKER_HOST"),
        ({"DOCKER_HOST": "tcp://"}, "DOCKER_HOST"),
        ({"DOCKER_HOST": "unix://relative.sock"}, "DOCKER_HOST"),
        (
            {
                "GITHUB_TOKEN": "ghp_base0123456789abcdef",
                "GITHUB_REPO": "a/b",
                "GITHUB_API_URL": "garbage",
            },
            "GITHUB_API_URL",
        ),
        ({"GITLAB_URL": "https://host:99999"}, "GITLAB_URL"),
        ({"RUNNER_MEMORY": "lots"}, "RUNNER_MEMORY"),
    ],
)
def test_absurd_settings_are_refused_naming_the_variable(
    env: dict[str, str], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _load(monkeypatch, dict(BASE, **env))
    assert f"(env {field})" in message, message


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("pools: [{name: p, min_idle: 5, max_runners: 2}]", "pools[0]"),
        ("pools: [{name: p, cooldown_s: .inf}]", "pools[0].cooldown_s"),
        ("pools: [{name: p, cpus: .nan}]", "pools[0].cpus"),
        ("forges: [{kind: gitlab, url: 'https://g', group_refresh_s: .inf}]", "group_refresh_s"),
        ("ceiling: {max_cpus: .inf}", "ceiling.max_cpus"),
        ("docker_hosts: [{name: a}, {name: a}]", "duplicate docker host names"),
        ("pools: [{name: p, env: {RUNNER_CREDENTIAL_FILE: /etc/shadow}}]", "pools[0].env"),
    ],
)
def test_absurd_yaml_is_refused_naming_the_field(
    yaml_text: str, field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    assert field in _load(monkeypatch, BASE, path)


# --- 12.5: a file that is not YAML, or YAML meant to hurt --------------------------------

NASTY_FILES: dict[str, bytes] = {
    "syntax": b"pools: [{name: p\n",
    "python-tag": b"pools: !!python/object/apply:os.system ['touch /tmp/pwned-by-config']\n",
    "nul": b"pools: []\x00\n",
    "not-utf8": b"pools: ['\xff\xfe']\n",
    "deep": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "deep-block": (
        "a:" + "".join("\n" + " " * (i + 1) + "b:" for i in range(1200)) + " 1\n"
    ).encode(),
    "laughs": b"".join(
        [b"a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"]
        + [
            f"a{i}: &a{i} [".encode() + b", ".join([f"*a{i - 1}".encode()] * 10) + b"]\n"
            for i in range(1, 9)
        ]
    ),
    "huge": b"# " + b"x" * (20 * 1024 * 1024) + b"\n",
    "list-root": b"- 1\n- 2\n",
    "tabs": b"pools:\n\t- name: p\n",
}


@pytest.mark.parametrize("kind", sorted(NASTY_FILES))
def test_a_nasty_config_file_is_one_line(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(NASTY_FILES[kind])
    message = _load(monkeypatch, BASE, path)
    assert message.startswith("invalid config: config_file ")
    assert len(message.splitlines()) == 1
    assert not Path("/tmp/pwned-by-config").exists()  # noqa: S108


@pytest.mark.parametrize("value", ["[" * 100_000, "{" * 40, "[" * 10 + "]" * 10 + "x" * 70_000])
def test_nested_or_huge_json_in_env_is_one_line(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _load(monkeypatch, dict(BASE, POOLS=value))
    assert message.startswith("invalid config: pools (env POOLS)")


# --- the CLI as a real process: representative cases -------------------------------------


@pytest.mark.parametrize(
    ("env", "secret", "names"),
    [
        ({"GITLAB_URL": TOKEN}, TOKEN, "GITLAB_URL"),
        ({"GITHUB_TOKEN": "ghp_base0123456789abcdef", "GITHUB_REPO": TOKEN}, TOKEN, "GITHUB_REPO"),
        ({"INSTANCE_ID": RANDOM_SECRET}, RANDOM_SECRET, "INSTANCE_ID"),
        ({"LOG_LEVEL": RANDOM_SECRET}, RANDOM_SECRET, "LOG_LEVEL"),
        ({"IDLE_TIMEOUT": "inf", "GC_INTERVAL": "nan"}, "", "IDLE_TIMEOUT"),
        ({"NETWORK_NAME": "host"}, "", "NETWORK_NAME"),
        ({"DOCKER_HOST": "garbage"}, "", "DOCKER_HOST"),
    ],
)
def test_cli_check_config_one_line_no_secret_exit_2(
    env: dict[str, str], secret: str, names: str, tmp_path: Path
) -> None:
    result = cli("check-config", env=dict(BASE, **env), cwd=tmp_path)
    assert_one_line_errors(result, 2, *([secret] if secret else []), BASE["GITLAB_TOKEN"])
    assert f"(env {names})" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("kind", ["syntax", "python-tag", "nul", "deep", "huge"])
def test_cli_nasty_file_exit_2_quickly(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(NASTY_FILES[kind])
    result = cli("--config", str(path), "check-config", env=BASE, cwd=tmp_path)
    assert_one_line_errors(result, 2)
    assert "config_file" in result.stderr


def test_cli_ceiling_bypass_from_the_issue_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pools: [{name: p, volumes: ['/var/run/docker.sock:/var/run/docker.sock']}]\n")
    result = cli("--config", str(path), "check-config", env=BASE, cwd=tmp_path)
    assert_one_line_errors(result, 2)
    assert "pools[0].volumes[0]" in result.stderr


# --- 12.5: the journal and its directory -------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", ["run", "plan", "check-config"])
def test_a_damaged_journal_refuses_to_start_and_is_left_alone(command: str, tmp_path: Path) -> None:
    journal = tmp_path / "state.db"
    journal.write_bytes(os.urandom(8192))
    before = _digest(journal)
    env = dict(BASE, STATE_PATH=str(journal), HTTP_PORT="0")
    result = cli(command, env=env, cwd=tmp_path)
    assert_one_line_errors(result, 1)
    assert "A damaged journal" in result.stderr
    assert _digest(journal) == before  # nothing lost, nothing rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_journal_with_damaged_pages_refuses_to_start(command: str, tmp_path: Path) -> None:
    journal = tmp_path / "state.db"
    db = sqlite3.connect(journal)
    db.execute("CREATE TABLE t (x TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    db.commit()
    db.close()
    raw = bytearray(journal.read_bytes())
    raw[4096:8192] = os.urandom(4096)  # page 2 scribbled over, header intact
    journal.write_bytes(bytes(raw))
    env = dict(BASE, STATE_PATH=str(journal), HTTP_PORT="0")
    result = cli(command, env=env, cwd=tmp_path)
    assert_one_line_errors(result, 1)
    assert "damaged" in result.stderr


@pytest.mark.parametrize(
    ("setup", "env_name", "code"),
    [
        ("state-is-dir", "STATE_PATH", 2),
        ("data-dir-is-file", "DATA_DIR", 2),
        ("data-dir-under-file", "DATA_DIR", 2),
    ],
)
def test_journal_paths_that_cannot_work(
    setup: str, env_name: str, code: int, tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("x")
    env = {
        "state-is-dir": {"STATE_PATH": str(tmp_path)},
        "data-dir-is-file": {"DATA_DIR": str(tmp_path / "afile")},
        "data-dir-under-file": {"DATA_DIR": str(tmp_path / "afile" / "sub")},
    }[setup]
    for command in ("check-config", "run", "plan"):
        result = cli(command, env=dict(BASE, HTTP_PORT="0", **env), cwd=tmp_path)
        assert_one_line_errors(result, code)
        assert f"(env {env_name})" in result.stderr


@pytest.mark.skipif(os.getuid() == 0, reason="root writes anywhere")
def test_unwritable_data_dir_is_an_environment_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = cli("check-config", env=dict(BASE, DATA_DIR=str(locked / "d")), cwd=tmp_path)
    assert_one_line_errors(result, 1)


# --- 12.7: plan --json prints only JSON --------------------------------------------------


def test_plan_json_stdout_is_json_even_when_the_forge_fails(tmp_path: Path) -> None:
    env = dict(
        BASE,
        GITLAB_URL="http://127.0.0.1:9",  # nothing listens: the forge fails and is logged
        GITLAB_PROJECTS="group/project",
        LOG_FORMAT="json",
    )
    result = cli("plan", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # nothing but JSON on stdout
    assert report["forges"][0]["error"]
    assert "forge" in result.stderr  # the log line went to stderr
    assert BASE["GITLAB_TOKEN"] not in result.stdout + result.stderr


def test_secretstr_fields_stay_secret(make_settings: Any) -> None:
    s = make_settings(management_enabled=True, management_token=SecretStr("mgmt-secret-token"))
    assert "mgmt-secret-token" not in json.dumps(s.masked())


def test_run_with_the_http_port_taken_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = dict(
            BASE,
            GITLAB_URL="http://127.0.0.1:9",
            HTTP_PORT=str(taken.getsockname()[1]),
            DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",
            LOG_FORMAT="console",
        )
        result = cli("run", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "address already in use" in result.stderr


# --- any YAML at all: accepted or one ConfigError, never another exception --------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["host", "/var/run/docker.sock:/s", "gitlab", "github", "all", "none"]),
)
_KEYS = st.one_of(
    st.sampled_from(
        sorted(Settings.model_fields)
        + ["name", "kind", "url", "volumes", "network", "env", "gpu", "forge", "labels"]
    ),
    st.text(max_size=12),
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=5),
    max_leaves=25,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.dictionaries(_KEYS, _TREES, max_size=6))
def test_any_yaml_tree_loads_or_is_a_config_error(
    data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    path = tmp_path_factory.mktemp("yaml") / "c.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    _load(monkeypatch, BASE, path)  # anything but a ConfigError propagates and fails


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300))
def test_any_bytes_load_or_are_a_config_error(
    raw: bytes, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path_factory.mktemp("raw") / "c.yaml"
    path.write_bytes(raw)
    _load(monkeypatch, BASE, path)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pool=st.dictionaries(
        st.sampled_from(sorted(PoolConfig.model_fields)),
        _TREES | st.lists(st.text(max_size=40)),
        max_size=6,
    ),
    ceiling=st.dictionaries(st.sampled_from(sorted(Ceiling.model_fields)), _TREES, max_size=4),
)
def test_any_pool_and_ceiling_load_or_are_a_config_error(
    pool: dict[str, Any],
    ceiling: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import yaml

    path = tmp_path_factory.mktemp("pool") / "c.yaml"
    path.write_text(yaml.safe_dump({"pools": [{"name": "p", **pool}], "ceiling": ceiling}))
    _load(monkeypatch, BASE, path)
