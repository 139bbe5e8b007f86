"""Configuration: env names admins know, YAML, clear errors (exit 2), docs kept in sync."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import docgen
from orchestrator.config import ConfigError, Settings, env_names, load_settings
from orchestrator.config_env import EnvSettings

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    clean = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
        check=False,
    )


def test_max_runners_abc_exits_2_naming_the_field() -> None:
    result = cli(
        "check-config",
        env={
            "MAX_RUNNERS": "abc",
            "GITLAB_URL": "http://g",
            "GITLAB_TOKEN": "glpat-testtoken0123456789",
        },
    )
    assert result.returncode == 2
    assert "max_runners" in result.stderr and "MAX_RUNNERS" in result.stderr
    assert "integer" in result.stderr


def test_check_config_prints_effective_config_with_secrets_masked() -> None:
    result = cli(
        "check-config",
        env={
            "GITLAB_URL": "https://gitlab.example.com",
            "GITLAB_TOKEN": "glpat-testtoken0123456789",
            "GITLAB_PROJECTS": "a/b,c/d",
            "MANAGEMENT_ENABLED": "true",
            "MANAGEMENT_TOKEN": "mgmt-secret-token",
            "GITLAB_WEBHOOK_SECRET": "hook-secret",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "glpat-testtoken" not in result.stdout
    assert "mgmt-secret-token" not in result.stdout and "hook-secret" not in result.stdout
    assert "**********" in result.stdout
    assert "- a/b" in result.stdout


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"GITLAB_TOKEN": "glpat-testtoken0123456789"}, "gitlab_url"),
        ({"GITHUB_TOKEN": "ghp_testtoken0123456789abcdef"}, "github_repo"),
        ({"GITLAB_URL": "http://g", "GITLAB_TOKEN": "x", "POLL_INTERVAL": "0"}, "poll_interval"),
        ({"GITLAB_URL": "ftp://g", "GITLAB_TOKEN": "x"}, "GITLAB_URL"),
        (
            {"GITLAB_URL": "http://g", "GITLAB_TOKEN": "x", "MANAGEMENT_ENABLED": "1"},
            "management_token",
        ),
        (
            {"GITLAB_URL": "http://g", "GITLAB_TOKEN": "x", "SHUTDOWN_MODE": "explode"},
            "shutdown_mode",
        ),
        ({"GITHUB_REPO": "not-a-repo", "GITHUB_TOKEN": "x"}, "GITHUB_REPO"),
    ],
)
def test_invalid_env_names_the_field(
    env: dict[str, str], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert field in str(err.value)


def test_seed_names_map_to_one_forge_and_a_default_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "GITHUB_TOKEN": "ghp_testtoken0123456789abcdef",
        "GITHUB_ORG": "acme",
        "GITHUB_REPO": "acme/app,acme/lib",
        "MIN_RUNNERS": "1",
        "MAX_RUNNERS": "7",
        "MAX_IDLE_RUNNERS": "2",
        "RUNNER_COOLDOWN_MINUTES": "3",
        "POLL_INTERVAL": "9",
    }
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    (forge,) = s.forges
    assert forge.kind == "github" and forge.orgs == ["acme"]
    assert forge.repos == ["acme/app", "acme/lib"]
    (pool,) = s.pool_specs()
    assert (pool.min_idle, pool.max_runners, pool.max_idle, pool.cooldown_s) == (1, 7, 2, 180)
    assert s.poll_interval == 9 and s.max_runners == 7
    monkeypatch.setenv("IDLE_TIMEOUT", "42")
    assert load_settings().pool_specs()[0].cooldown_s == 42  # IDLE_TIMEOUT wins


def test_yaml_file_with_several_forges_and_pools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-testtoken0123456789")
    monkeypatch.setenv("POLL_INTERVAL", "5")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("""
poll_interval: 60
max_runners: 30
forges:
  - {kind: gitlab, name: lab, url: "https://gitlab.example.com/api/v4", projects: [1, a/b]}
  - {kind: github, name: hub, token: ghp_testtoken0123456789abcdef, repos: [o/r],
     api_url: "https://ghe.example.com/api/v3"}
pools:
  - {name: amd64, forge: lab, labels: [docker, amd64], max_runners: 10}
  - {name: gpu, forge: lab, labels: [gpu], gpu: 2, cpus: 4, memory: 16g}
  - {name: gh, forge: hub, platform: auto, ephemeral: false}
""")
    s = load_settings(cfg)
    assert s.poll_interval == 5  # env wins over the file
    lab = s.forge("lab")
    assert lab.url == "https://gitlab.example.com"  # /api/v4 folded away
    assert lab.token is not None and lab.token.get_secret_value().startswith("glpat-")
    hub = s.forge("hub")
    assert hub.kind == "github" and hub.web_url == "https://ghe.example.com"
    assert [p.name for p in s.pool_specs()] == ["amd64", "gpu", "gh"]
    assert s.pool("gpu").gpu == 2


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("pools: [{name: p, privileged: true}]", "pools[0].privileged"),
        ("pools: [{name: p, docker_socket: true}]", "pools[0].docker_socket"),
        ("pools: [{name: p, network: host}]", "pools[0].network"),
        ("pools: [{name: p, cap_add: [SYS_ADMIN]}]", "pools[0].cap_add"),
        ("pools: [{name: p, forge: nope}]", "pools[0].forge"),
        ("pools: [{name: p, gpu: 0}]", "gpu"),
        ("pools: [{name: p, hosts: [ghost]}]", "pools[0].hosts"),
        ("pools: [{name: 'Bad Name'}]", "name"),
        ("pools: [{name: p}, {name: p}]", "duplicate"),
        ("pools: [{name: p, memory: lots}]", "memory"),
        ("pools: [{name: p, typo_field: 1}]", "typo_field"),
    ],
)
def test_yaml_errors_name_the_field(
    yaml_text: str, field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.setenv("GITLAB_URL", "http://g")
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-testtoken0123456789")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert field in str(err.value)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    result = cli("--config", str(tmp_path / "nope.yaml"), "check-config")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_env_example_lists_every_variable_and_is_current() -> None:
    text = (ROOT / ".env.example").read_text()
    for name in env_names():
        assert f"{name}=" in text, f"{name} missing from .env.example"
    assert text == docgen.env_example(), "run: python -m orchestrator.docgen"


def test_readme_config_reference_matches_the_settings_model() -> None:
    text = (ROOT / "README.md").read_text()
    for name in env_names():
        assert f"`{name}`" in text, f"{name} missing from README"
    assert text == docgen.render_readme(text), "run: python -m orchestrator.docgen"


def test_env_only_fields_come_first_and_keep_their_docstrings() -> None:
    """docgen lists Settings.model_fields in order; the fields EnvSettings declares are
    inherited, and must stay first and described (the .env.example order)."""
    names = list(Settings.model_fields)
    assert names[: len(EnvSettings.model_fields)] == list(EnvSettings.model_fields)
    assert names[0] == "gitlab_url" and "config_file" in names
    undescribed = [n for n, f in Settings.model_fields.items() if not f.description]
    assert undescribed == []


def test_python_dash_m_and_console_script_agree(make_settings: Callable[..., Settings]) -> None:
    env = {"GITLAB_URL": "http://g", "GITLAB_TOKEN": "glpat-testtoken0123456789"}
    a = cli("check-config", "--json", env=env)
    clean = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    clean.update(env)
    b = subprocess.run(
        ["runner-orchestrator", "check-config", "--json"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout
