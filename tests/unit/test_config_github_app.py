"""GitHub App settings: all or nothing, the key read and parsed at start-up, never shown.

A wrong path, a damaged key or half an App is a configuration error naming its field (exit
2 through the CLI), and the key never appears in the error, ``check-config`` or a log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.app import build_providers
from orchestrator.config import ConfigError, Settings, load_settings
from orchestrator.logging import redact_text
from providers.base import ignore_request
from tests.appkeys import app_key_pair

ROOT = Path(__file__).resolve().parents[2]
PEM = app_key_pair(traditional=True)[0]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.pem"
    path.write_text(PEM)
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    monkeypatch.setenv("GITHUB_REPO", "octo/app")
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_an_app_from_the_environment_defines_the_github_forge(
    monkeypatch: pytest.MonkeyPatch, key_file: Path
) -> None:
    _env(
        monkeypatch,
        GITHUB_APP_ID="1234",
        GITHUB_APP_INSTALLATION_ID="99",
        GITHUB_APP_PRIVATE_KEY_FILE=str(key_file),
    )
    settings = load_settings()
    (forge,) = settings.forges
    assert forge.kind == "github" and forge.uses_app()  # type: ignore[union-attr]

    providers = build_providers(settings, "t", ignore_request)
    options = providers["github"]._options  # type: ignore[attr-defined]
    assert options.app.app_id == "1234" and options.app.installation_id == 99
    assert options.app.private_key == PEM
    assert PEM not in repr(options) and PEM not in repr(settings)
    assert "**redacted**" in redact_text(f"oops {PEM}")


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"GITHUB_APP_ID": "1234"}, "app_installation_id"),
        ({"GITHUB_APP_ID": "1234", "GITHUB_APP_INSTALLATION_ID": "9"}, "app_private_key_file"),
        (
            {
                "GITHUB_APP_ID": "1234",
                "GITHUB_APP_INSTALLATION_ID": "9",
                "GITHUB_APP_PRIVATE_KEY_FILE": "/nonexistent/app.pem",
            },
            "app_private_key_file: cannot read",
        ),
        ({"GITHUB_APP_ID": "12 34", "GITHUB_APP_INSTALLATION_ID": "9"}, "app_id"),
        ({"GITHUB_APP_INSTALLATION_ID": "0"}, "github_app_installation_id"),
    ],
)
def test_half_an_app_is_an_error_naming_the_field(
    env: dict[str, str], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, **env)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert field in str(err.value)


def test_a_token_and_an_app_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, key_file: Path
) -> None:
    _env(
        monkeypatch,
        GITHUB_TOKEN="ghp_abcdefghijklmnop",
        GITHUB_APP_ID="1234",
        GITHUB_APP_INSTALLATION_ID="9",
        GITHUB_APP_PRIVATE_KEY_FILE=str(key_file),
    )
    with pytest.raises(ConfigError, match="not both"):
        load_settings()


def test_a_damaged_key_is_refused_without_repeating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.pem"
    damaged = PEM[:200] + "garbage" + PEM[260:]
    bad.write_text(damaged)
    _env(
        monkeypatch,
        GITHUB_APP_ID="1234",
        GITHUB_APP_INSTALLATION_ID="9",
        GITHUB_APP_PRIVATE_KEY_FILE=str(bad),
    )
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "app_private_key" in str(err.value)
    assert "garbage" not in str(err.value) and "MII" not in str(err.value)


def test_yaml_forge_with_an_app_and_check_config_masks_the_key(
    tmp_path: Path, key_file: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "forges:\n"
        "  - kind: github\n"
        "    orgs: [acme]\n"
        "    app_id: '77'\n"
        "    app_installation_id: 5\n"
        f"    app_private_key_file: {key_file}\n"
    )
    clean = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    done = subprocess.run(  # noqa: S603 - our interpreter, our module
        [sys.executable, "-m", "orchestrator", "--config", str(config), "check-config"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "BEGIN RSA PRIVATE KEY" not in done.stdout + done.stderr
    assert "app_installation_id" in done.stdout
