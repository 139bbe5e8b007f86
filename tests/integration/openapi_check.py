"""One conformance mechanism for both forge simulators: answers against an OpenAPI excerpt.

:class:`SpecChecker` takes a real request path (``/api/v4/projects/4/jobs``), finds the
spec's path template (``/api/v4/projects/{id}/jobs``), asserts the answered status is
documented for that operation, that a documented JSON body came back as JSON, and
validates the body against the response schema (components resolved, formats checked)
with openapi-schema-validator. Each forge's known description bugs are corrected by the
``schema_fix``/``body_fix`` hooks its test passes in, written down there, never here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker

SPECS = Path(__file__).resolve().parent.parent / "specs"


def load_spec(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SPECS / name).read_text())
    return loaded


def _identity(value: Any) -> Any:
    return value


class SpecChecker:
    """Checks (method, path, status, content type, body) against one OpenAPI document."""

    def __init__(
        self,
        spec: dict[str, Any],
        *,
        prefix: str = "",
        schema_fix: Callable[[Any], Any] = _identity,
        body_fix: Callable[[Any], Any] = _identity,
    ) -> None:
        self.spec = spec
        self.prefix = prefix
        self.schema_fix = schema_fix
        self.body_fix = body_fix
        self.components = schema_fix(copy.deepcopy(spec["components"]))
        self.checked = 0
        self._templates = [
            (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) + "$"), p)
            for p in spec["paths"]
        ]

    def template(self, path: str) -> str:
        """The spec path matching a real request path (literal segments win)."""
        path = path.split("?", 1)[0].removeprefix(self.prefix)
        matches = [tpl for pattern, tpl in self._templates if pattern.match(path)]
        assert matches, f"{path} is not in the spec excerpt"
        return min(matches, key=lambda t: t.count("{"))

    def operation(self, path: str, method: str) -> dict[str, Any]:
        op: dict[str, Any] = self.spec["paths"][self.template(path)][method.lower()]
        return op

    def _response(self, ref_or_response: dict[str, Any]) -> dict[str, Any]:
        ref = ref_or_response.get("$ref")
        if ref is None:
            return ref_or_response
        found: dict[str, Any] = self.spec["components"]["responses"][ref.rsplit("/", 1)[-1]]
        return found

    def validate(self, body: Any, schema: dict[str, Any]) -> None:
        root = {**self.schema_fix(copy.deepcopy(schema)), "components": self.components}
        validator = OAS30Validator(root, format_checker=oas30_format_checker)
        errors = sorted(validator.iter_errors(self.body_fix(body)), key=str)
        assert not errors, errors[0]

    def check(
        self, method: str, path: str, status: int, body: Any, content_type: str = "application/json"
    ) -> None:
        responses = self.operation(path, method)["responses"]
        where = f"{method} {self.template(path)}"
        assert str(status) in responses, f"{where} answered undocumented {status}"
        self.checked += 1
        content = self._response(responses[str(status)]).get("content")
        if not content:
            return
        assert content_type in content, f"{where} {status}: {content_type} not documented"
        schema = content[content_type].get("schema")
        if schema is None:
            return
        self.validate(body, schema)


def component(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}
