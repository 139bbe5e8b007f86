"""Static checks of the deployment files, with the real tools where they exist.

promtool (Debian package ``prometheus``), docker-compose and systemd-analyze validate
their files; the metric names used by the alert rules and the Grafana dashboard are
checked against the /metrics of a real in-process daemon.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import LiveDaemon
from tests.deploy.support import (
    ALERTS,
    COMPOSE_FILE,
    DEPLOY,
    PROMETHEUS_CONFIG,
    REPO,
    SYSTEMD_UNIT,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
    exported_names,
    metric_names,
    need_tool,
    rule_exprs,
    run,
    unknown_names,
)

# --- Prometheus --------------------------------------------------------------------------


def test_promtool_accepts_the_scrape_config_and_its_rule_file() -> None:
    promtool = need_tool("promtool", "apt-get install -y prometheus")
    out = run([promtool, "check", "config", str(PROMETHEUS_CONFIG)])
    assert "1 rule files found" in out.stdout, out.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = need_tool("promtool", "apt-get install -y prometheus")
    out = run([promtool, "check", "rules", str(ALERTS)])
    assert "SUCCESS" in out.stdout


def test_alert_rules_fire_as_their_unit_tests_say() -> None:
    promtool = need_tool("promtool", "apt-get install -y prometheus")
    run([promtool, "test", "rules", str(DEPLOY / "prometheus" / "alerts.test.yml")])


def test_alert_rules_cover_what_admins_need_to_hear_about() -> None:
    exprs = rule_exprs()
    used = {name: metric_names(expr) for name, expr in exprs.items()}
    everything = set().union(*used.values())
    for needed in (
        "up",  # daemon down
        "runner_orchestrator_forge_errors_total",
        "runner_orchestrator_forge_rate_limit_remaining",
        "runner_orchestrator_oldest_waiting_job_seconds",
        "runner_orchestrator_pool_at_max",
        "runner_orchestrator_runner_failures_total",
        "runner_orchestrator_orphans_removed_total",
    ):
        assert needed in everything, f"no alert rule uses {needed}"
    waiting = next(e for e in exprs.values() if "oldest_waiting_job_seconds" in e)
    assert "by (reason)" in waiting, "waiting-job alert must keep the reason label"
    orphans = next(e for e in exprs.values() if "orphans_removed_total" in e)
    assert "increase(" in orphans
    data = yaml.safe_load(ALERTS.read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


async def test_every_metric_in_rules_and_dashboard_is_exported_by_the_daemon(
    live_daemon: LiveDaemon,
) -> None:
    exposition = await live_daemon.metrics()
    known = exported_names(exposition)
    # The scrape is real: the reconcile ran, so the histograms have samples.
    assert "runner_orchestrator_job_pickup_latency_seconds_bucket" in {
        s for s in known if s.endswith("_bucket")
    }
    assert re.search(r"runner_orchestrator_job_pickup_latency_seconds_count\{.*\} 1\.0", exposition)
    assert unknown_names(rule_exprs(), known) == {}
    assert unknown_names(dashboard_exprs(dashboard()), known) == {}


async def test_the_dashboard_shows_every_metric_family_the_daemon_exports(
    live_daemon: LiveDaemon,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    families = {
        f.name
        for f in text_string_to_metric_families(await live_daemon.metrics())
        if f.name.startswith("runner_orchestrator_") and not f.name.endswith("_created")
    }
    used = set().union(*(metric_names(e) for e in dashboard_exprs(dashboard()).values()))
    used_families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used} | used
    assert families - used_families == set()


def test_metric_name_extraction_understands_our_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, pool) (rate(x_bucket{pool=~"$pool"}'
        "[$__rate_interval]))) / on(pool) group_left y and z offset 5m"
    )
    assert metric_names(expr) == {"x_bucket", "y", "z"}
    assert metric_names("label_values(runner_orchestrator_runners, pool)") == {
        "runner_orchestrator_runners"
    }
    assert metric_names('up{job="a"} == 0 or absent(up{job="a"})') == {"up"}


# --- Grafana -----------------------------------------------------------------------------


def test_dashboard_is_a_provisionable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] == "runner-orchestrator"
    assert board["schemaVersion"] >= 36
    names = [v["name"] for v in board["templating"]["list"]]
    assert names[0] == "datasource"
    ids = [p["id"] for p in dashboard_panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard_panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_has_the_panels_the_tracker_asked_for() -> None:
    exprs = dashboard_exprs(dashboard())
    joined = "\n".join(exprs.values())
    for quantile in ("0.5", "0.95"):
        pattern = rf"histogram_quantile\({quantile}, .*job_pickup_latency_seconds_bucket"
        assert re.search(pattern, joined), f"no pickup latency p{quantile}"
    assert "sum by (state) (runner_orchestrator_runners" in joined
    assert "sum by (reason) (runner_orchestrator_waiting_jobs)" in joined
    assert "runner_orchestrator_pending_jobs" in joined
    assert "sum by (forge, status) (rate(runner_orchestrator_forge_requests_total" in joined
    assert "runner_orchestrator_forge_rate_limit_remaining" in joined
    assert "runner_orchestrator_reconcile_duration_seconds_bucket" in joined


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"  # the compose service name
    providers = yaml.safe_load((prov / "dashboards" / "runner-orchestrator.yml").read_text())
    (provider,) = providers["providers"]
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    target = next(m.split(":")[1] for m in mounts if "dashboard.json" in m)
    assert Path(target).parent == Path(provider["options"]["path"])


# --- compose -----------------------------------------------------------------------------


def _compose_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env_file = tmp_path / "test.env"
    env_file.write_text("GITLAB_URL=http://gitlab.test\nGITLAB_TOKEN=glpat-x\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_GID"))}
    env.update({"ENV_FILE": str(env_file), "DOCKER_GID": "105"}, **extra)
    return env


def _compose_config(tmp_path: Path, *profile: str, **extra: str) -> dict[str, Any]:
    compose = need_tool("docker-compose", "apt-get install -y docker-compose")
    args = [compose, "-f", str(COMPOSE_FILE)]
    if profile:
        args += ["--profile", *profile]
    out = run([*args, "config"], env=_compose_env(tmp_path, **extra), timeout=60)
    config: dict[str, Any] = yaml.safe_load(out.stdout)
    return config


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


def test_compose_file_is_valid_and_runs_the_daemon_as_documented(tmp_path: Path) -> None:
    config = _compose_config(tmp_path)
    daemon = config["services"]["orchestrator"]
    env = daemon["environment"]
    assert env["DATA_DIR"] == "/data" and env["HTTP_HOST"] == "0.0.0.0"
    assert env["GITLAB_URL"] == "http://gitlab.test"  # from env_file
    assert daemon["group_add"] == ["105"]
    assert daemon["restart"] == "unless-stopped"
    assert any(p.startswith("127.0.0.1:8080:8080") for p in map(str, daemon["ports"])), daemon
    volumes = [str(v) for v in daemon["volumes"]]
    assert any(v.startswith("/var/run/docker.sock:/var/run/docker.sock") for v in volumes)
    assert any(v.startswith("state:/data") for v in volumes)
    assert "state" in config["volumes"]
    # Long enough for the worst-case stop: reconcile (SHUTDOWN_TIMEOUT) + drain (+15 s).
    from orchestrator.config import Settings

    shutdown = Settings.model_fields["shutdown_timeout"].default
    assert _seconds(daemon["stop_grace_period"]) >= 2 * shutdown + 15 + 10
    assert daemon["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim"


def test_compose_monitoring_profile_adds_prometheus_and_grafana(tmp_path: Path) -> None:
    config = _compose_config(tmp_path, "monitoring")
    services = config["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"])
    mounted = {str(v).split(":")[0] for v in services["prometheus"]["volumes"]}
    assert str(DEPLOY / "prometheus" / "prometheus.yml") in mounted
    assert str(DEPLOY / "prometheus" / "alerts.yml") in mounted
    prom_config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = prom_config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["orchestrator:8080"]  # service name and container port in compose


def test_compose_refuses_to_start_without_the_docker_socket_group(tmp_path: Path) -> None:
    compose = need_tool("docker-compose", "apt-get install -y docker-compose")
    env = _compose_env(tmp_path)
    del env["DOCKER_GID"]
    out = run([compose, "-f", str(COMPOSE_FILE), "config"], env=env, check=False, timeout=60)
    assert out.returncode != 0
    assert "DOCKER_GID" in out.stderr and "stat -c %g /var/run/docker.sock" in out.stderr


def test_compose_v2_plugin_accepts_the_file_too(tmp_path: Path) -> None:
    docker = need_tool("docker", "the Docker CLI")
    probe = run([docker, "compose", "version"], check=False, timeout=30)
    if probe.returncode != 0:
        pytest.skip("NOT RUN: no `docker compose` v2 plugin here (docker-compose 1.x is checked)")
    env = _compose_env(tmp_path)
    run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "--profile", "monitoring", "config", "-q"],
        env=env,
        timeout=60,
    )


# --- systemd, Dockerfile, scripts --------------------------------------------------------


def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    text = SYSTEMD_UNIT.read_text()
    directives = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    assert directives["EnvironmentFile"] and directives["StateDirectory"] == ["runner-orchestrator"]
    assert directives["KillSignal"] == ["SIGTERM"]
    assert float(directives["TimeoutStopSec"][0]) >= 2 * 30 + 15
    for hardening in (
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "RestrictAddressFamilies",
        "CapabilityBoundingSet",
        "SystemCallFilter",
    ):
        assert hardening in directives, hardening
    assert "root" not in directives["User"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("NOT RUN: systemd-analyze missing; only the directives were checked")
    # verify wants ExecStart= to exist: point it at a binary that does.
    unit = tmp_path / "runner-orchestrator.service"
    unit.write_text(text.replace("/opt/runner-orchestrator/bin/runner-orchestrator", "/bin/true"))
    out = run([analyze, "verify", str(unit)], check=False, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    # systemd's own hardening score (0 = locked down, 10 = exposed); needs systemd >= 252.
    out = run([analyze, "security", "--offline=true", str(unit)], check=False, timeout=60)
    score = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out.stdout)
    if out.returncode != 0 and score is None:
        pytest.skip(f"NOT RUN: systemd-analyze security --offline unsupported: {out.stderr[:200]}")
    assert score is not None and float(score.group(1)) <= 2.0, out.stdout[-2000:]


def test_dockerfile_runs_unprivileged_with_a_health_check() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0")), users
    assert re.search(r"^HEALTHCHECK .*\n?.*urllib.*/health", text, re.M)
    assert 'ENTRYPOINT ["runner-orchestrator"]' in text and 'CMD ["run"]' in text
    assert "DATA_DIR=/data" in text and "HTTP_HOST=0.0.0.0" in text
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[0].startswith("#") and "*" in ignored, "context must be allow-listed"


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = need_tool("shellcheck", "apt-get install -y shellcheck")
    scripts = sorted(str(p) for p in (REPO / "scripts").glob("build-*.sh"))
    assert scripts
    run([shellcheck, *scripts])
