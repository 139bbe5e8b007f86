"""The OpenAPI document is valid, is the file in docs/, and covers every route."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate

from orchestrator import openapi
from orchestrator.config import Settings
from orchestrator.metrics import Metrics
from orchestrator.reconciler import Reconciler
from orchestrator.state import Journal
from orchestrator.web import create_app
from tests.fakes import FakeForge, FakeRuntime, FakeWorld

ROOT = Path(__file__).resolve().parents[2]


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = openapi.document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_docs_openapi_json_is_the_generated_document() -> None:
    kept = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert kept == openapi.render(), (
        "docs/openapi.json is stale: run python -m orchestrator.openapi docs/openapi.json"
    )


def test_every_route_is_documented(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings()
    world = FakeWorld()
    forge = FakeForge(world, name="gitlab", kind="gitlab", instance_id="test")
    metrics = Metrics()
    reconciler = Reconciler(
        settings=settings,
        journal=Journal(tmp_path / "j.db"),
        providers={"gitlab": forge},
        runtime=FakeRuntime(world, instance_id="test"),
        metrics=metrics,
        instance_id="test",
    )
    app = create_app(
        settings=settings,
        reconciler=reconciler,
        metrics_=metrics,
        providers={"gitlab": forge},
        last_tick=lambda: 0.0,
    )
    paths: dict[str, Any] = openapi.document()["paths"]
    undocumented = []
    routes = 0
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp adds HEAD to every GET route by itself
            continue
        routes += 1
        assert route.resource is not None
        path = route.resource.canonical
        if route.method.lower() not in paths.get(path, {}):
            undocumented.append(f"{route.method} {path}")
    assert routes > 10
    assert undocumented == []
    documented = {(p, m) for p, ops in paths.items() for m in ops}
    served = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.resource is not None
    }
    assert documented <= served, f"documented but not served: {documented - served}"


def test_the_served_document_is_the_same_json() -> None:
    assert json.loads(openapi.render()) == openapi.document()
