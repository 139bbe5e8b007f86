"""Configuration errors that name the real field and never repeat a secret.

A configuration error is printed to the terminal and often pasted into a ticket, so it
must not contain what the admin typed when that could be a credential: a token pasted into
``GITLAB_URL``, a password swapped into ``LOG_LEVEL``, a YAML key that is really a token.
The rule is simple so that it holds for every field, present and future:

* an input value is echoed only when it is a number (``MAX_WEBHOOK_BYTES=1e23``), and
  even then not when it looks like a secret;
* a location part (a YAML key) is shown only when it looks like an identifier and not
  like a secret; otherwise it reads ``<key>``;
* the message pydantic wrote is scrubbed of the input value, of every secret registered
  with :func:`orchestrator.logging.register_secret` and of forge token shapes.

Each error names the environment variable that really exists: ``GITLAB_URL`` rather than
the internal ``url`` of the forge model it was copied into.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from pydantic import ValidationError

from orchestrator.logging import redact_text

HIDDEN = "<hidden>"
_NUMBER = re.compile(r"[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
#: pydantic's discriminator tags, dropped from locations (``forges[0].gitlab.url``).
_TAGS = frozenset({"gitlab", "github"})


class ConfigError(Exception):
    """Invalid configuration; ``str()`` is one line per problem, each naming the field."""


def looks_secret(text: str) -> bool:
    """True for anything that could be a credential: a forge token shape, a registered
    secret, or a long mix of letters and digits (random strings are tokens until proven
    otherwise)."""
    if redact_text(text) != text:
        return True
    letters = any(c.isalpha() for c in text)
    digits = any(c.isdigit() for c in text)
    return len(text) >= 16 and letters and digits


def shown(value: object) -> str:
    """``repr(value)`` for a plain short name that cannot be a secret, else ``<hidden>``.

    For names the admin chose (pool, forge, Docker host names) in messages such as
    "duplicate pool names".
    """
    if isinstance(value, str) and _NAME.fullmatch(value) and not looks_secret(value):
        return repr(value)
    return HIDDEN


def shown_path(path: object) -> str:
    """A path as text, because naming the file is what makes the error useful, unless it
    does not look like a path (no ``/``, ``~`` or ``.`` start, no file extension) or a part
    of it looks like a secret: a token pasted into ``CONFIG_FILE`` or ``DATA_DIR``."""
    text = str(path)
    pathlike = text.startswith(("/", "./", "../", "~/")) or bool(
        re.fullmatch(r"[\w.-]+\.(ya?ml|db|sqlite3?|json)", text)
    )
    if not pathlike or any(looks_secret(part) for part in text.split("/")):
        return "<hidden path>"
    return text


def shown_all(values: Iterable[object]) -> str:
    """``'a', 'b', <hidden>`` for a list of names (see :func:`shown`)."""
    return ", ".join(shown(v) for v in values)


def echo(value: object) -> str:
    """``", got X"`` when ``value`` is a number that cannot be a secret, else ``""``."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str) and len(value.strip()) <= 24 and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
    else:
        return ""
    return "" if looks_secret(text) else f", got {text}"


#: pydantic error types whose message quotes the input.
_QUOTING_TYPES = frozenset({"union_tag_invalid", "json_invalid", "enum", "literal_error"})


def scrub(message: str, value: object = None, kind: str = "") -> str:
    """``message`` without the input value where it is quoted, and without any secret."""
    if (
        isinstance(value, str)
        and value
        and value in message
        and (kind in _QUOTING_TYPES or looks_secret(value))
    ):
        message = message.replace(value, HIDDEN)
    return redact_text(message)


def location(parts: Sequence[int | str]) -> str:
    """``("pools", 0, "gpu")`` -> ``pools[0].gpu``; secret-looking keys read ``<key>``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        if part in _TAGS and out.endswith("]"):
            continue
        text = part if _IDENTIFIER.fullmatch(part) and not looks_secret(part) else "<key>"
        out += f".{text}" if out else text
    return out or "config"


def describe(
    error: ValidationError, env_names: Iterable[str], *, prefix: tuple[int | str, ...] = ()
) -> list[str]:
    """One line per pydantic error, each naming the field (and its env var when it has one)."""
    readable = {name.lower() for name in env_names}
    lines = []
    for item in error.errors():
        loc = (*prefix, *item["loc"])
        value = item.get("input")
        message = scrub(str(item["msg"]).removeprefix("Value error, "), value, item["type"])
        if item["type"] == "value_error" and not loc:
            # our own model-level checks already name their field
            lines.extend(message.splitlines())
            continue
        where = location(loc)
        if len(loc) == 1 and isinstance(loc[0], str) and loc[0] in readable:
            where += f" (env {loc[0].upper()})"
        lines.append(f"{where}: {message}{echo(value)}")
    return lines


def translate(error: ValidationError, env_of: Mapping[str, str], fallback: str) -> list[str]:
    """Errors of a model built from environment variables (the forge built from
    ``GITLAB_URL``...), renamed to the variables the admin actually set.

    ``env_of`` maps the model's field to the env var; fields not in it are reported under
    ``fallback``.
    """
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        env = env_of.get(field, fallback)
        value = item.get("input")
        message = scrub(str(item["msg"]).removeprefix("Value error, "), value, item["type"])
        lines.append(f"{env.lower()} (env {env}): {message}{echo(value)}")
    return lines


def render(lines: Iterable[str]) -> str:
    """The text of a :class:`ConfigError`: ``invalid config: ...`` once per line."""
    return "\n".join(f"invalid config: {redact_text(line)}" for line in lines)
