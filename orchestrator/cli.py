"""Command line: ``runner-orchestrator {run,check-config,plan}`` (also ``python -m orchestrator``).

Exit codes: 0 fine, 1 the environment is not usable (journal damaged or not writable,
runtime failure), 2 invalid configuration or usage. Every such error is one line on
stderr naming the field or file; a traceback means a bug.

stdout carries only the command's output (the effective config, the plan); every log line,
ours and the libraries', goes to stderr, so ``plan --json | jq`` always gets JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from orchestrator import preflight
from orchestrator.config import ConfigError, Settings, load_settings
from orchestrator.config_errors import shown_path
from orchestrator.logging import configure, redact_text

EXIT_CONFIG = preflight.EXIT_CONFIG
EXIT_ENVIRONMENT = preflight.EXIT_ENVIRONMENT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner-orchestrator",
        description="Autoscale self-hosted GitLab/GitHub CI runners as Docker containers.",
    )
    parser.add_argument("--config", type=Path, help="YAML config file (else CONFIG_FILE)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the daemon")
    check = sub.add_parser("check-config", help="validate and print the effective config")
    check.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    plan = sub.add_parser("plan", help="one dry-run reconcile: what would happen now")
    plan.add_argument("--json", action="store_true", help="print JSON")
    status = sub.add_parser("status", help="summary of the running daemon (from its API)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--url", help="daemon API (else RUNNER_ORCHESTRATOR_URL, else HTTP_HOST:HTTP_PORT)"
    )
    return parser


def _fail(text: str) -> None:
    print(redact_text(text), file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "status":  # asks the running daemon; needs no configuration
        from orchestrator.statuscli import main as status_main

        return status_main(args.url, as_json=args.json)
    configure(stream=sys.stderr)  # until the settings say otherwise; never stdout
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        _fail(str(exc))
        return EXIT_CONFIG
    configure(settings.log_level, settings.log_format, stream=sys.stderr)
    problems = preflight.check(settings)
    if args.command == "check-config":
        _check_config(settings, as_json=args.json)
        if problems:
            _fail(preflight.render(problems))
        return preflight.exit_code(problems)
    if not problems:
        problems = preflight.check_journal(settings.journal_path)
    if problems:
        _fail(preflight.render(problems))
        return preflight.exit_code(problems)
    try:
        if args.command == "plan":
            return asyncio.run(_plan(settings, as_json=args.json))
        from orchestrator.app import run

        return asyncio.run(run(settings))
    except sqlite3.DatabaseError as exc:  # the journal went bad after the check above
        journal = shown_path(settings.journal_path)
        _fail(f"cannot start: journal {journal}: {exc}; {preflight.DAMAGED_HELP}")
        return EXIT_ENVIRONMENT
    except OSError as exc:  # opening the journal: what os.access could not foresee (root)
        journal = shown_path(settings.journal_path)
        _fail(f"cannot start: journal {journal}: {exc.strerror or exc}")
        return EXIT_ENVIRONMENT


def _check_config(settings: Settings, *, as_json: bool) -> None:
    data = settings.masked()
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print("# effective configuration (secrets masked)")
        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), end="")


async def _plan(settings: Settings, *, as_json: bool) -> int:
    from orchestrator.planlib import dry_run

    report = await dry_run(settings)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_plan(report)
    return 0


def _print_plan(report: dict[str, Any]) -> None:
    for forge in report["forges"]:
        state = f"PAUSED: {forge['error']}" if forge["error"] else "ok"
        print(f"forge {forge['name']} ({forge['kind']}): {forge['pending']} pending jobs [{state}]")
    print(f"\njobs seen: {len(report['jobs'])}")
    for job in report["jobs"]:
        tags = ", ".join(job["tags"]) or "(untagged)"
        target = f"pool {job['pool']}" if job["pool"] else "no pool"
        detail = f": {job['detail']}" if job["detail"] else ""
        print(f"  {job['job']} [{tags}] in {job['scope']} -> {target} ({job['reason']}{detail})")
    print("\nwould create:")
    for c in report["create"] or []:
        print(f"  {c['count']} runner(s) in pool {c['pool']} ({c['platform']}, {c['reason']})")
    if not report["create"]:
        print("  nothing")
    print("would retire:")
    for r in report["retire"] or []:
        print(f"  runner {r['runner_id']} in pool {r['pool']} ({r['reason']})")
    if not report["retire"]:
        print("  nothing")
    print("\n(dry run: nothing was changed)")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
