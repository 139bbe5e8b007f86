"""docs/benchmarks.md from the figures saved in docs/benchmarks.json: :func:`render` is a
pure function of that data (no Docker, no files), so a unit test can check that the
committed page is what the committed data renders to."""

from __future__ import annotations

import statistics
from typing import Any

from scripts import gitlab_budget

#: Burst phases in the order a spawn goes through them, with what each one is.
BURST_PHASES = [
    ("spawn semaphore wait", "waiting for one of the reconciler's 8 spawn slots"),
    ("journal write", "SQLite journal writes (5 per runner, on the event loop)"),
    ("forge register", "forge registration (simulator on loopback)"),
    ("runtime queue (semaphore + thread hand-off)", "waiting for a runtime worker thread"),
    ("docker create", "engine: create the container"),
    (
        "docker inspect",
        "engine: inspect after create and after start (2 calls until issue 15's second pass; none now)",
    ),
    ("credential put_archive", "engine: copy the credential file in (file delivery)"),
    (
        "credential stdin attach+write",
        "engine: attach to stdin before start, write the credential after (stdin delivery)",
    ),
    ("docker start", "engine: start"),
    ("spawn total", "one runner, end to end (includes the semaphore wait)"),
]


def _load_note(r: dict[str, Any], names: list[str]) -> str:
    loads = [r.get("sections", {}).get(n, {}).get("load") for n in names]
    loads = [x for x in loads if x]
    if not loads:
        return ""
    top = max(max(x) for x in loads)
    cpus = r["machine"]["cpus"]
    if top <= cpus:
        return f"1-minute load average up to {top} on {cpus} cores."
    return (
        f"The 1-minute load average reached {top} on {cpus} cores (the bench's own "
        "containers, runners and simulators count, and any other work on the machine), "
        "so absolute times are inflated and noisy; the same-run baselines and ratios are "
        "the figures to read."
    )


def _when(r: dict[str, Any]) -> str:
    dates = sorted(v["date"] for v in r.get("sections", {}).values())
    if len(dates) > 1:
        return f"sections run between {dates[0]} and {dates[-1]}"
    return f"run on {r['date']}"


def _burst_rows(bu: dict[str, Any]) -> list[str]:
    """The burst rows of the main table: the default delivery first, then the others,
    then the raw SDK with the daemon's create options. A run from before stdin delivery
    (no ``stdin_delivery`` key) shows its file delivery as the default it then was."""
    default = "stdin" if "stdin_delivery" in bu else "file"
    d = bu[f"{default}_delivery"]
    base = f"SDK create+start {bu['jobs']}, {bu['concurrency']} at a time: {bu['baseline_sdk_s']} s"
    rows = [
        f"| burst of {bu['jobs']} queued jobs → {bu['jobs']} containers running "
        f"(median of {bu['rounds']} interleaved rounds), from the first job queued, "
        f"`CREDENTIAL_DELIVERY={default}` | {d['daemon_s']} s | {base} | {d['ratio']}× |",
        f"| same, from the poll that saw the jobs (median wait for it: "
        f"{d['poll_wait_s']} s of the 2 s interval) | {d['daemon_from_seen_s']} s | "
        f"as above | {d['ratio_from_seen']}× |",
    ]
    what = {
        "file": "`CREDENTIAL_DELIVERY=file` (`put_archive`)",
        "env": "`CREDENTIAL_DELIVERY=env` (credential in `docker inspect`)",
    }
    if "stdin_idle_runners" in bu:
        m = bu["stdin_idle_runners"]
        rows.append(
            "| same, runners that take no job (entrypoint and credential as above, then "
            "`sleep` like the raw baseline: the daemon's own cost, without 50 runners "
            f"starting up on the same 2 cores), from the poll that saw the jobs | "
            f"{m['daemon_from_seen_s']} s | as above | {m['ratio_from_seen']}× |"
        )
    for mode in ("file", "env"):
        if mode != default:
            m = bu[f"{mode}_delivery"]
            rows.append(
                f"| same with {what[mode]}, from the poll that saw the jobs | "
                f"{m['daemon_from_seen_s']} s | as above | {m['ratio_from_seen']}× |"
            )
    if "baseline_hardened_sdk_s" in bu:
        rows.append(
            f"| raw SDK create+start {bu['jobs']}, {bu['concurrency']} at a time, with the "
            f"daemon's create options (hardening; no daemon, no forge) | "
            f"{bu['baseline_hardened_sdk_s']} s | as above | {bu['baseline_hardened_ratio']}× |"
        )
    return rows


def _burst_breakdown(r: dict[str, Any], bu: dict[str, Any]) -> list[str]:
    """The "Where a burst's time goes" section."""
    modes = [m for m in ("stdin", "file", "env") if f"{m}_delivery" in bu]
    default = modes[0]
    raw_calls = bu["baseline_call_mean_ms"]
    hard_calls = bu.get("baseline_hardened_call_mean_ms")
    heads = [
        f"{m} delivery"
        + (" (default)" if m == "stdin" else " (the default in this run)" if m == default else "")
        for m in modes
    ]
    heads.append("raw SDK, 8 at a time")
    if hard_calls:
        heads.append("raw SDK with the daemon's create options")
    lines = [
        "",
        "### Where a burst's time goes",
        "",
        "Each daemon round runs under `scripts/bench_probe.py`, which wraps the journal, "
        "the provider, the runtime and the docker SDK's HTTP calls with timers. Per runner "
        f"(mean over the {bu['jobs']} runners of a round, median over rounds), milliseconds; "
        "the raw columns time the baselines' own calls in the same rounds (their create "
        "includes the SDK's inspect after create):",
        "",
        "| phase | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]

    def raw_cell(calls: dict[str, float], name: str) -> str:
        if name == "spawn total":
            return str(round(sum(calls.values()), 1))
        return str(calls.get(name, "–"))

    for name, what in BURST_PHASES:
        cells = [str(bu[f"{m}_delivery"]["phase_mean_ms"].get(name, "–")) for m in modes]
        cells.append(raw_cell(raw_calls, name))
        if hard_calls:
            cells.append(raw_cell(hard_calls, name))
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    d = bu[f"{default}_delivery"]
    recs = [len(x) for x in d["reconciles"]]
    samples = "; ".join(
        f"{m} delivery {bu[f'{m}_delivery']['samples_from_seen_s']} s" for m in modes
    )
    hardened = (
        f"; raw with the daemon's create options {bu['baseline_hardened_samples_s']} s"
        if hard_calls
        else ""
    )
    paired = (
        f" Round by round, the default row against the raw run of the same round: "
        f"{d['round_ratios_from_seen']} (median {round(statistics.median(d['round_ratios_from_seen']), 2)}×); "
        "the table's ratio is the median daemon time over the median raw time."
        if "round_ratios_from_seen" in d
        else ""
    )
    lines += [
        "",
        f"Reconciles per burst: {recs} (all {bu['jobs']} jobs were seen by one poll, and "
        f"one reconcile spawned them). Daemon samples (from the poll that saw the jobs): "
        f"{samples}; raw {bu['baseline_samples_s']} s{hardened}.{paired} "
        + _load_note(r, ["burst"]),
        "",
        "Reading it: raw create+start 8 at a time already saturates the engine, so the "
        "ratio follows how much engine work a runner costs beyond create+start. The "
        "daemon's own steps are small (journal writes, registration on loopback, waiting "
        "for a worker thread). (1) Credential delivery: file delivery's `put_archive` "
        f"({bu['file_delivery']['phase_mean_ms'].get('credential put_archive', '–')} ms per "
        "runner here) makes the engine mount the created container's filesystem and unpack "
        "the archive in a separate process. Stdin delivery, the default since issue 15, "
        "creates the container with stdin open (`StdinOnce`), attaches to its stdin before "
        "start and writes the credential right after it: no mount, no extra process, and "
        "the credential is still never in `docker inspect` (docs/runner-contract.md); env "
        "delivery shows the burst with no delivery at all, at the price of the credential "
        "in `docker inspect`. (2) In poll mode a burst first waits for the next poll "
        "(half an interval on average); the first row includes that wait, the others "
        "start at the poll. (3) The daemon's create options (init, memory and pids "
        "limits, dropped capabilities, log limits) are measured on their own by the raw "
        "run with those options"
        + (
            f" ({bu['baseline_hardened_sdk_s']} s, {bu['baseline_hardened_ratio']}× the "
            "plain raw run; earlier runs measured 1.04×: the options cost the engine "
            "little, within this machine's run-to-run noise)"
            if hard_calls
            else " (a column of its own since issue 15; not in this run) "
        )
        + "; that is their engine cost alone, so the distance between it and a daemon row is the "
        "daemon's own overhead (and the forge simulator's, which shares the cores with "
        "it). The plain raw run stays the goal baseline. (4) The raw baseline's "
        "containers run `sleep`; the daemon's runners start working as soon as they run "
        "(the test image's job-taking shim: token check, job request, about 15 "
        "processes each with the entrypoint; about 70 before issue 15's second pass), so "
        "while the burst is still starting containers, 50 runners and "
        "the forge simulator answering them share the two cores with the engine. The "
        "'runners that take no job' row starts the same image, entrypoint and "
        "credential delivery with `sleep` in place of the shim: "
        + (
            f"{bu['stdin_idle_runners']['ratio_from_seen']}× raw, "
            if "stdin_idle_runners" in bu
            else ""
        )
        + "the daemon's own cost of a burst; the distance to the default row is the "
        "runners' start-up work, which a host with more cores than two absorbs.",
        "",
        "Changed after the first breakdown: the runtime ran at most 4 Docker calls at "
        "once, on asyncio's default thread pool (6 threads on 2 cores, shared with the "
        "forge providers), so calls waited about 200 ms each for a thread; it now runs "
        "8 (the spawn concurrency) on its own pool. Journal writes fsynced on the event "
        "loop (SQLite `synchronous=FULL`, 1.7 ms each quiet, 5-7 ms under load, 5 per "
        "runner); WAL with `synchronous=NORMAL` still commits each write before the "
        "action it guards, so a daemon crash loses nothing. Second pass: the runtime "
        "creates through the SDK's low-level API and reads nothing back after start, so a "
        "runner costs the engine create, attach and start (the SDK's `containers.create` "
        "inspected the new container, and start was followed by another inspect: about "
        "17 ms a runner); and the test image's shims fork about 15 processes at start "
        "instead of about 70 (parameter expansion in place of pipelines).",
    ]
    return lines


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"`python scripts/bench.py`, {_when(r)}: {m['cpus']} cores, "
        f"{m['memory_gib']} GiB, kernel {m['kernel']}, Docker Engine {m['docker_server']} "
        f"({m['storage_driver']}), Python {m['python']}, image `{m['image']}` (busybox). "
        "Raw figures and each section's date and load: [benchmarks.json](benchmarks.json). "
        "Every daemon figure stands beside a baseline measured in the same run.",
        "",
        "| what | daemon | baseline (same run) | ratio |",
        "|---|---|---|---|",
    ]
    if "pickup_poll_s" in r:
        b = r["baseline_create_start_s"]
        poll, hook = r["pickup_poll_s"], r["pickup_webhook_s"]
        lines += [
            f"| job queued → runner container running, poll mode (interval 2 s), p50 / p95 | "
            f"{poll['p50']} s / {poll['p95']} s | SDK create+start one container: "
            f"{b['p50']} s / {b['p95']} s | {poll['ratio_to_baseline_p50']}× |",
            f"| same, webhook mode (GitHub workflow_job, poll 120 s), p50 / p95 | "
            f"{hook['p50']} s / {hook['p95']} s | as above | "
            f"{hook['ratio_to_baseline_p50']}× |",
        ]
    if "pickup_defaults" in r:
        d = r["pickup_defaults"]
        before = {row["kind"]: row for row in r.get("pickup_defaults_before", {}).get("rows", [])}
        for row in d["rows"]:
            lines.append(
                f"| same, default settings, no webhooks ({row['kind']}, {row['watched']} "
                f"watched, poll {row['poll_interval_s']:g} s), p50 / p95 of "
                f"{len(row['samples'])} | {row['p50']} s / {row['p95']} s | SDK create+start "
                f"one container: {d['baseline_create_start_s']} s | "
                f"{row['ratio_to_baseline_p50']}× |"
            )
            old = before.get(row["kind"])
            if old and old is not row:
                lines.append(
                    f"| same, before the per-forge poll schedule (issue 15: fixed "
                    f"{old['poll_interval_s']:g} s poll), p50 / p95 of {len(old['samples'])} | "
                    f"{old['p50']} s / {old['p95']} s | new p50 above | "
                    f"{round(old['p50'] / max(row['p50'], 1e-9), 1)}× slower |"
                )
    if "burst50" in r and "file_delivery" in r["burst50"]:
        lines += _burst_rows(r["burst50"])
    for row in r.get("planner", []):
        lines.append(
            f"| planner: {row['jobs']:,} pending jobs × {row['runners']:,} runners × "
            f"{row['pools']} pools ({row['distinct_tag_sets']} distinct tag sets), fastest of "
            f"several | {row['plan_ms']} ms | the per-job matching it replaced, same inputs: "
            f"{row['reference_ms']} ms | {round(row['plan_ms'] / row['reference_ms'], 3)}× "
            f"({row['speedup']}× faster) |"
        )
    if "footprint" in r:
        fp = r["footprint"]
        w, b0 = fp["watched"], fp["baseline"]
        lines.append(
            f"| idle footprint watching {w['projects']} GitLab projects + {w['repos']} GitHub "
            f"repos, image dependencies only (see notes): RSS (peak) / CPU | {w['rss_mib']} MiB ({w['peak_rss_mib']}) / "
            f"{w['idle_cpu_percent']} % | the same daemon watching 1 + 1: {b0['rss_mib']} MiB "
            f"({b0['peak_rss_mib']}) / {b0['idle_cpu_percent']} % | {fp['ratio_rss']}× |"
        )
        if "watched_app" in fp:
            a = fp["watched_app"]
            lines.append(
                f"| same, GitHub authenticated as an App (PyGithub imported for its JWT) | "
                f"{a['rss_mib']} MiB ({a['peak_rss_mib']}) / {a['idle_cpu_percent']} % | "
                f"the same daemon watching 1 + 1 with a token: {b0['rss_mib']} MiB | "
                f"{round(a['rss_mib'] / b0['rss_mib'], 2)}× |"
            )
    if "burst50" in r and "file_delivery" in r["burst50"]:
        lines += _burst_breakdown(r, r["burst50"])
    if "forge_cost" in r:
        cost = {(c["kind"], c["scopes"]): c for c in r["forge_cost"]}
        lines += [
            "",
            "### Idle forge cost",
            "",
            "No jobs, default poll interval 15 s; GitLab budget 300 requests/min. Baseline: "
            "what polling every watched project (GitLab: 1 request) or repo (GitHub: 2, queued "
            "and in_progress) every interval would cost. Since issue 15 each forge is polled "
            "on a schedule derived from its budget (a third of it while idle, at most "
            "POLL_INTERVAL unless the budget cannot pay for that), GitLab through GraphQL "
            "(one request for up to 100 projects) and a quiet GitHub repository costs one "
            "request; 'requests / reconcile' no longer means per poll (polls and reconciles "
            "are apart). The 'before' column is the run before that change.",
            "",
            "| forge | watched | requests / reconcile | poll-everything baseline / reconcile | requests / idle hour | before issue 15's poll schedule / idle hour | rate limit used / idle hour | daemon CPU idle | daemon RSS |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        before = {(c["kind"], c["scopes"]): c for c in r.get("forge_cost_before", [])}
        for c in r["forge_cost"]:
            used = c.get("rate_limit_used_per_idle_hour", "n/a (GitLab has no hourly budget)")
            naive = c["scopes"] * (2 if c["kind"] == "github" else 1)
            old = before.get((c["kind"], c["scopes"]))
            was = (
                f"{old['requests_per_idle_hour']} "
                f"({round(c['requests_per_idle_hour'] / old['requests_per_idle_hour'], 2)}×)"
                if old and old is not c and old["requests_per_idle_hour"]
                else "-"
            )
            lines.append(
                f"| {c['kind']} | {c['scopes']} | {c['requests_per_reconcile']} | {naive} | "
                f"{c['requests_per_idle_hour']} | {was} | {used} | {c['idle_cpu_percent']} % | "
                f"{c['rss_mib']} MiB |"
            )
        gh100, gl100 = cost[("github", 100)], cost[("gitlab", 100)]
        lines += [
            "",
            "GitHub polls two run lists per repo (queued and in_progress); for 100 repos at "
            "the default 15 s interval that would be about 800 conditional requests a "
            "minute, near GitHub's secondary limit (900 points/min per endpoint), so the "
            "provider paces polls to GITHUB_REQUESTS_PER_MINUTE (600 by default): measured "
            f"{gh100['requests_per_idle_hour'] // 60} requests a minute here, none of them "
            "against the hourly budget (ETags: a 304 costs no rate limit). GitLab stays "
            "inside its request budget by polling only part of the projects each round when "
            "the budget cannot cover them all (100 projects: "
            f"{gl100['requests_per_reconcile']} requests per reconcile).",
        ]
    if "swarm_pickup" in r:
        sw = r["swarm_pickup"]
        ours, raw = sw["swarm_pickup_webhook_s"], sw["raw_service_create_to_running_s"]
        lines += [
            "",
            "### Swarm runtime: job queued to task running",
            "",
            "Webhook-driven (a GitLab Job Hook announces each job: no poll wait), "
            f"{len(ours['samples'])} jobs one after another; baseline: raw `docker service "
            "create` of the same image to task running, same run (engine "
            f"{sw['docker_server']}). The daemon's part beyond the raw create: the webhook, "
            "the runner's registration with the forge, and the Swarm secret that carries "
            "its credential (created before the service, a write to the swarm's store).",
            "",
            "| what | p50 s | p95 s | ratio p50 |",
            "|---|---|---|---|",
            f"| daemon, Swarm runtime | {ours['p50']} | {ours['p95']} | {sw['ratio_p50']} |",
            f"| raw service create | {raw['p50']} | {raw['p95']} | 1 |",
        ]
    if "gitlab_budget" in r:
        lines += gitlab_budget.section(r["gitlab_budget"])
    lines += [
        "",
        "### Notes",
        "",
        "Pickup latency is measured from the simulator accepting the job to the runner "
        "container reaching `running` (docker SDK polled every 20 ms); in poll mode it "
        "includes the wait for the next poll, so its mean is about half the interval. The "
        "default-settings rows queue each job at a random phase of the poll interval.",
        "",
        "The footprint row runs the daemon with only its own dependencies importable, as "
        "in the image: this checkout also has `rich` (pulled in by test tools), which "
        "structlog imports when present, adding about 3 MiB; the idle-cost table's RSS "
        "column is measured with it. Nearly all of the footprint is imports, not "
        "per-project state (1 + 1 and 100 + 100 watched differ by about a MiB): measured "
        "in import order, the interpreter 13.5 MiB, pydantic 5, structlog with the stdlib "
        "it pulls in 9, aiohttp 12, requests 6, the config models 8, docker, APScheduler, "
        "prometheus_client, python-gitlab and the daemon's modules about 10. PyGithub (with "
        "PyJWT and cryptography) adds 13.7 MiB at import, since its package imports all of "
        "its model classes; it is imported only for a GitHub App's JWT, so a daemon "
        "configured with tokens does not load it (the 'as an App' row shows the cost).",
        "",
        "The planner rows time `compute_plan` in-process on a generated fleet "
        "(`planner_world` in scripts/benchlib/planner_bench.py); the baseline is the same function with the "
        "per-job `match_pool` plugged back in (`tests/reference_planner.py`), and the bench "
        "checks both plans are equal before timing them.",
    ]
    note = _load_note(r, list(r.get("sections", {})))
    if note:
        lines += ["", note]
    lines.append("")
    return "\n".join(lines)
