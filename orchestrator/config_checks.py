"""Checks shared by the configuration models, each written once.

The base model every config section uses (frozen, no unknown keys, finite numbers, field
docstrings as descriptions), the bounds that recur across sections (a count of runners, a
request budget, a CPU limit), URL and list-entry checks, and the cross-section helpers
(duplicate names, an empty secret). A check raises ``ValueError`` with a message that
never repeats the value (it may be a secret; see :mod:`orchestrator.config_errors`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr
from pydantic_settings import NoDecode

from orchestrator.config_errors import shown_all

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
DAY_S = 86_400.0
WEEK_S = 7 * DAY_S

#: How many runners (or idle runners) one setting may ask for.
RunnerCount = Annotated[int, Field(ge=0, le=10_000)]
#: A forge's request budget per minute.
RequestsPerMinute = Annotated[int, Field(ge=1, le=100_000)]
#: A container's CPU limit.
Cpus = Annotated[float, Field(gt=0, le=1024)]


class ConfigModel(BaseModel):
    """A section of the configuration (a forge, a pool, a Docker host, the ceiling)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


def split_commas(value: Any) -> Any:
    """Accept ``a,b`` from env vars as well as real lists from YAML."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


#: A list given as ``a,b`` in an env var or as a real list in YAML.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]


def _host(parts: SplitResult) -> str | None:
    """The URL's host, or None when it has none or its port is not a number."""
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None
    return parts.hostname


def http_url(value: str, example: str) -> str:
    """An http(s) URL with a host; the message never repeats the value (it may be a token).
    A URL ``urlsplit`` refuses outright keeps its message ("Invalid IPv6 URL")."""
    host = _host(urlsplit(value)) if re.match(r"^https?://", value) else None
    if not host or re.search(r"\s", value):
        raise ValueError(f"must be an http(s) URL like {example}")
    return value


def http_url_like(example: str) -> AfterValidator:
    """:func:`http_url` as a field validator (``Annotated[str, http_url_like(...)]``)."""
    return AfterValidator(lambda value: http_url(value, example))


def docker_url(value: str) -> str:
    """A Docker endpoint the SDK can use: unix/npipe with a path, tcp/ssh/http(s) with a host."""
    match = re.match(r"^(unix|npipe|tcp|ssh|http|https)://(.*)$", value)
    if not match or re.search(r"\s", value):
        raise ValueError("must start with unix://, tcp://, ssh:// or http(s)://")
    scheme, rest = match.groups()
    if scheme in {"unix", "npipe"}:
        if not rest.startswith("/"):
            raise ValueError(
                f"{scheme}:// needs an absolute socket path (unix:///var/run/docker.sock)"
            )
        return value
    try:
        host = _host(urlsplit(value))
    except ValueError:
        host = None
    if not host:
        raise ValueError(f"{scheme}:// needs a host (tcp://host:2376, ssh://user@host)")
    return value


#: A Docker endpoint URL (:func:`docker_url`).
DockerUrl = Annotated[str, AfterValidator(docker_url)]


def entries(ok: Callable[[str], object], problem: str) -> AfterValidator:
    """A list validator: every entry passes ``ok``, else ``problem`` for the first that
    does not, with ``{n}`` its number counted from 1 (the entry itself is never shown)."""

    def check(values: list[str]) -> list[str]:
        for index, value in enumerate(values):
            if not ok(value):
                raise ValueError(problem.format(n=index + 1))
        return values

    return AfterValidator(check)


def matching(pattern: str) -> Callable[[str], object]:
    """``ok`` for :func:`entries`: the whole entry matches ``pattern``."""
    return re.compile(pattern).fullmatch


def duplicates(field: str, what: str, names: Iterable[str]) -> list[str]:
    """``<field>: duplicate <what> names ...`` when a name is given twice, else nothing."""
    names = list(names)
    if len(set(names)) == len(names):
        return []
    return [f"{field}: duplicate {what} names {shown_all(names)}"]


def is_empty(secret: SecretStr | None) -> bool:
    """True for a secret that is not set or set to the empty string."""
    return secret is None or not secret.get_secret_value()
