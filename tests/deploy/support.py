"""Helpers for the deployment checks: paths, PromQL metric names, tools, processes."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = REPO / "compose.yaml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboard.json"
SYSTEMD_UNIT = DEPLOY / "systemd" / "runner-orchestrator.service"

#: Series Prometheus makes itself (not exported by the daemon).
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

_PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def need_tool(name: str, why: str) -> str:
    """The tool's path, or a loud skip naming the package to install."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"NOT RUN: `{name}` is missing ({why})")
    return path


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression (or a Grafana label_values() query) selects.

    Not a full parser, but enough for our expressions: strings, label matchers, ranges and
    grouping clauses are removed first; what is left that is an identifier and is not a
    function call or a keyword is a metric name.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    label_values = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*\w+\s*\)\s*", text)
    if label_values:
        return {label_values.group(1)}
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group(0).lower() in _PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def exported_names(exposition: str) -> set[str]:
    """Every series name the exposition can produce, by family type.

    Counters are exposed as ``<name>_total``, histograms as ``_bucket``/``_sum``/``_count``;
    families without samples yet (a counter never incremented) still count: their
    ``# TYPE`` line is what Prometheus will see once they are.
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
        elif family.type == "summary":
            names.update({family.name, f"{family.name}_sum", f"{family.name}_count"})
        else:
            names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def rule_exprs() -> dict[str, str]:
    """alert name -> expression, from deploy/prometheus/alerts.yml."""
    data = yaml.safe_load(ALERTS.read_text())
    return {
        rule.get("alert") or rule["record"]: rule["expr"]
        for group in data["groups"]
        for rule in group["rules"]
    }


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(board: dict[str, Any]) -> dict[str, str]:
    """Map "panel title / refId" to its expression, plus the templating queries."""
    out = {}
    for panel in dashboard_panels(board):
        for target in panel.get("targets", []):
            out[f"{panel['title']} / {target['refId']}"] = target["expr"]
    for var in board.get("templating", {}).get("list", []):
        query = var.get("query")
        if var.get("type") == "query":
            out[f"variable {var['name']}"] = query["query"] if isinstance(query, dict) else query
    return out


def grafana_to_promql(expr: str) -> str:
    """Substitute Grafana's variables so Prometheus can evaluate a panel query."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$pool", ".*")
        .replace("${datasource}", "")
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # the thing is not up yet
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})")


def run(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    check: bool = True,
    cwd: Path = REPO,
) -> subprocess.CompletedProcess[str]:
    """Run a command, returning its output; on failure show both streams."""
    proc = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(args)}` exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def unknown_names(exprs: dict[str, str], known: Iterable[str]) -> dict[str, set[str]]:
    """Expressions that select a metric the daemon does not export."""
    allowed = set(known) | PROMETHEUS_OWN
    bad = {}
    for where, expr in exprs.items():
        missing = metric_names(expr) - allowed
        if missing:
            bad[where] = missing
    return bad
