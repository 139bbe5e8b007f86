"""Table-driven tests of the pure placement function (no Docker needed)."""

from __future__ import annotations

import pytest

from orchestrator.runtime import HostStatus, NoCapacity
from orchestrator.runtime.placement import choose_host


def host(
    name: str,
    *,
    arch: str = "amd64",
    gpus: int = 0,
    containers: int = 0,
    max_containers: int = 10,
    ok: bool = True,
    error: str = "",
) -> HostStatus:
    return HostStatus(
        name=name,
        url=f"tcp://{name}:2376",
        ok=ok,
        arch=arch,
        gpus=gpus,
        max_containers=max_containers,
        containers=containers,
        error=error,
    )


CHOOSE = [
    pytest.param([host("a")], "linux/amd64", None, (), "a", id="single-host"),
    pytest.param(
        [host("a", containers=5), host("b", containers=2)],
        "linux/amd64",
        None,
        (),
        "b",
        id="least-loaded-wins",
    ),
    pytest.param(
        [host("a", containers=5, max_containers=10), host("b", containers=4, max_containers=5)],
        "linux/amd64",
        None,
        (),
        "a",
        id="load-is-relative-to-capacity",
    ),
    pytest.param(
        [host("a", containers=1, max_containers=2), host("b", containers=2, max_containers=4)],
        "linux/amd64",
        None,
        (),
        "b",
        id="tie-on-ratio-prefers-more-free-slots",
    ),
    pytest.param([host("a"), host("b")], "linux/amd64", None, (), "a", id="tie-config-order"),
    pytest.param(
        [host("x86"), host("arm", arch="arm64", containers=9)],
        "linux/arm64",
        None,
        (),
        "arm",
        id="arch-must-match",
    ),
    pytest.param(
        [host("cpu"), host("gpu", gpus=2, containers=5)],
        "linux/amd64",
        "all",
        (),
        "gpu",
        id="gpu-all-needs-one",
    ),
    pytest.param(
        [host("g1", gpus=1), host("g4", gpus=4, containers=3)],
        "linux/amd64",
        2,
        (),
        "g4",
        id="gpu-count",
    ),
    pytest.param(
        [host("a", ok=False), host("b", containers=9)],
        "linux/amd64",
        None,
        (),
        "b",
        id="dead-host-skipped",
    ),
    pytest.param(
        [host("a", containers=10), host("b", containers=9)],
        "linux/amd64",
        None,
        (),
        "b",
        id="full-host-skipped",
    ),
    pytest.param(
        [host("a"), host("b", containers=3)],
        "linux/amd64",
        None,
        ("b",),
        "b",
        id="allowed-restricts",
    ),
]


@pytest.mark.parametrize(("hosts", "platform", "gpus", "allowed", "expected"), CHOOSE)
def test_choose_host(hosts, platform, gpus, allowed, expected) -> None:
    assert choose_host(hosts, platform, gpus, allowed) == expected


REFUSE = [
    pytest.param([], "linux/amd64", None, (), "no docker hosts configured", id="no-hosts"),
    pytest.param([host("a")], "linux/amd64", None, ("zz",), "among allowed", id="not-allowed"),
    pytest.param([host("a")], "linux/arm64", None, (), "no docker host of arch arm64", id="arch"),
    pytest.param([host("a")], "linux/amd64", "all", (), "GPUs", id="no-gpu"),
    pytest.param([host("a", gpus=1)], "linux/amd64", 2, (), "2 or more GPUs", id="too-few-gpus"),
    pytest.param(
        [host("a", ok=False, error="connection refused"), host("b", ok=False)],
        "linux/amd64",
        None,
        (),
        "down (a: connection refused; b: down)",
        id="all-down",
    ),
    pytest.param(
        [host("a", containers=2, max_containers=2), host("b", max_containers=0)],
        "linux/amd64",
        None,
        (),
        "full (a 2/2, b 0/0)",
        id="all-full",
    ),
    pytest.param([host("a")], "windows/amd64", None, (), "unsupported platform", id="platform"),
    pytest.param(
        [host("arm", arch="arm64", gpus=4), host("x", gpus=0)],
        "linux/amd64",
        1,
        (),
        "GPUs",
        id="gpus-on-wrong-arch-do-not-count",
    ),
]


@pytest.mark.parametrize(("hosts", "platform", "gpus", "allowed", "reason"), REFUSE)
def test_choose_host_refuses_with_reason(hosts, platform, gpus, allowed, reason) -> None:
    with pytest.raises(NoCapacity, match=".*") as info:
        choose_host(hosts, platform, gpus, allowed)
    assert reason in str(info.value)
