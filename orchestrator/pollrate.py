"""How often to poll each forge: derived from what its budget allows (issue 15).

A fixed ``POLL_INTERVAL`` of 15 s made a job wait a median of 6-10 s before the daemon
saw it (no webhooks: most homelabs sit behind NAT). The forge's own budget says how often
we may ask: one job-poll round costs ``poll_cost`` requests (GitLab: one GraphQL request
per 100 projects, or one per project over REST; GitHub: two per busy repository, one per
quiet one) out of ``budget_per_minute``. Pure functions here; the tracker applies them.

* **fast** (a job was seen, or a webhook hinted one, within :data:`ACTIVE_WINDOW_S`):
  the round may use :data:`FAST_SHARE` of the budget;
* **idle**: :data:`IDLE_SHARE` of it (a homelab's first job of the day is still seen in
  a few seconds with a handful of projects);
* **webhook safety-net** (deliveries arrive: the last within :data:`WEBHOOK_FRESH_S`):
  the poll only catches what a lost delivery missed, so it runs at ``POLL_INTERVAL``.

Each interval is clamped to ``[floor, POLL_INTERVAL]``: ``POLL_INTERVAL`` stays the upper
bound an admin sets, the floor keeps a tiny scope from polling in a busy loop. Only when
even ``POLL_INTERVAL`` is more than the budget's share can pay for (hundreds of scopes)
does the budget win, as the providers' own pacing always did: the round interval is then
what the share allows, and ``/status`` says so (``budget-bound``). Before, 100 idle GitHub
repositories were paced to about 410 requests a minute, each seen every ~29 s; now a
quiet repository costs one request and the idle share (a third of 600/min) sees each of
them every 30 s for half the requests. The rest of the budget is for registrations,
activity checks and sweeps.
"""

from __future__ import annotations

import dataclasses

#: Shortest interval whatever the budget: a poll round is never a busy loop.
FLOOR_S = 1.5
#: Share of the forge's per-minute budget the job poll may use at the derived interval.
FAST_SHARE = 0.5
IDLE_SHARE = 1 / 3
#: A job seen (or hinted) this recently keeps the forge in fast mode.
ACTIVE_WINDOW_S = 300.0
#: A webhook delivery this recent means deliveries arrive: polling is only a safety net.
WEBHOOK_FRESH_S = 600.0


def derive_interval(
    poll_cost: int, budget_per_minute: int, *, share: float, floor_s: float, ceiling_s: float
) -> float:
    """Seconds between poll rounds so that rounds of ``poll_cost`` requests use at most
    ``share`` of ``budget_per_minute``, clamped to ``[floor_s, ceiling_s]`` (the floor
    never above the ceiling) unless the budget cannot pay for ``ceiling_s``: then the
    budget's own rate (the budget is never exceeded)."""
    floor_s = min(floor_s, ceiling_s)
    if poll_cost <= 0:
        return floor_s
    if budget_per_minute <= 0 or share <= 0:
        return ceiling_s
    needed = poll_cost * 60.0 / (budget_per_minute * share)
    if needed > ceiling_s:
        return needed
    return max(floor_s, needed)


@dataclasses.dataclass(frozen=True, slots=True)
class PollPlan:
    interval_s: float
    mode: str  # for /status: "fast (activity 12 s ago)", "idle", "webhook safety-net ..."


def plan(
    *,
    poll_cost: int | None,
    budget_per_minute: int | None,
    ceiling_s: float,
    activity_age_s: float | None,
    webhook_age_s: float | None,
    floor_s: float = FLOOR_S,
) -> PollPlan:
    """The forge's next interval and the words for it (ages: seconds ago, None: never)."""
    if webhook_age_s is not None and webhook_age_s < WEBHOOK_FRESH_S:
        return PollPlan(ceiling_s, f"webhook safety-net (last delivery {webhook_age_s:.0f} s ago)")
    if poll_cost is None or budget_per_minute is None:
        return PollPlan(ceiling_s, "fixed (POLL_INTERVAL; the forge's cost is not known yet)")
    if activity_age_s is not None and activity_age_s < ACTIVE_WINDOW_S:
        share, mode = FAST_SHARE, f"fast (activity {activity_age_s:.0f} s ago)"
    else:
        share, mode = IDLE_SHARE, "idle"
    interval = derive_interval(
        poll_cost, budget_per_minute, share=share, floor_s=floor_s, ceiling_s=ceiling_s
    )
    if interval > ceiling_s:
        mode += f", budget-bound (POLL_INTERVAL {ceiling_s:g} s costs more than its share)"
    return PollPlan(interval, f"{mode}: every {interval:.1f} s")
