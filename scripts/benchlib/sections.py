"""The section table: each name ``--only`` accepts, and what it measures.

Importing this module imports every section, hence the Docker client
(:mod:`scripts.benchlib.common`); ``--render`` does not import it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts import gitlab_budget
from scripts.benchlib.burst import burst
from scripts.benchlib.footprint import footprint
from scripts.benchlib.idle import forge_cost
from scripts.benchlib.pickup import section_pickup, section_pickup_defaults
from scripts.benchlib.planner_bench import planner_scaling
from scripts.benchlib.swarm_bench import swarm_pickup

#: name -> what it measures; each returns the keys it adds to benchmarks.json.
SECTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "planner": lambda tmp: {"planner": planner_scaling()},
    "pickup": section_pickup,
    "burst": lambda tmp: {"burst50": burst(tmp)},
    "forge_cost": lambda tmp: {
        # 100 scopes: a window of several budget-bound intervals (30 s and more since
        # issue 15), so a round is not missed or counted twice by where the window falls
        "forge_cost": [
            forge_cost(tmp, k, n, 40 if n == 10 else 120)
            for k in ("gitlab", "github")
            for n in (10, 100)
        ]
    },
    "footprint": lambda tmp: {"footprint": footprint(tmp)},
    "pickup_defaults": section_pickup_defaults,
    # job queued -> task running on the Swarm runtime beside raw `docker service create`
    "swarm": lambda tmp: {"swarm_pickup": swarm_pickup(tmp)},
    # GitLab requests/min by class with 10/50/100 busy runners (in-process, fake clock)
    "gitlab_budget": lambda tmp: {"gitlab_budget": asyncio.run(gitlab_budget.rows())},
}


#: Sections whose figures from before issue 15's poll schedule stay beside the new ones.
BEFORE_KEPT = {"pickup_defaults": "pickup_defaults", "forge_cost": "forge_cost"}
