"""Reading the YAML configuration file defensively: every problem is one line.

The file is admin input, so it is bounded before it is parsed and after: at most
:data:`MAX_BYTES` bytes (a 20 MB file must not make ``check-config`` hang), UTF-8 without
NUL bytes, ``yaml.safe_load`` only (a ``!!python/...`` tag is refused, never run), at most
:data:`MAX_DEPTH` levels of nesting and :data:`MAX_NODES` values counted as pydantic
would see them, so aliases that multiply a small file ("billion laughs") are refused
instead of expanded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config_errors import ConfigError, render, scrub, shown_path

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000


def _fail(path: Path, reason: str) -> ConfigError:
    return ConfigError(render([f"config_file {shown_path(path)}: {reason}"]))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``line L, column C: problem`` from a PyYAML error, without echoing the text."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not valid YAML"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return f"YAML error at {where}{scrub(problem)}"
    return f"YAML error: {scrub(type(exc).__name__)}"


def bracket_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting in ``text``: an upper bound (brackets inside strings
    count too), cheap enough to run before a parser that recurses."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def check_shape(data: Any, where: str) -> str:
    """'' when ``data`` is within the depth and size bounds, else the reason.

    Walks iteratively and counts every visit, so a shared (aliased) subtree counts once
    per reference, as validation would expand it.
    """
    stack: list[tuple[Any, int]] = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return f"{where}: more than {MAX_NODES} values (aliases included); refusing"
        if depth > MAX_DEPTH:
            return f"{where}: nested more than {MAX_DEPTH} levels deep"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value)
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)
    return ""


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping, checked as the module doc says.

    Raises :class:`ConfigError` (one line, naming the file) for every problem with it.
    """
    try:
        with path.open("rb") as stream:
            if not os.path.isfile(stream.name):
                raise _fail(path, "is not a regular file")
            raw = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _fail(path, "does not exist") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a file") from None
    except PermissionError:
        raise _fail(path, "cannot be read (permission denied)") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_BYTES:
        raise _fail(path, f"larger than {MAX_BYTES // 1024} KiB; refusing to parse it")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise _fail(path, f"contains a NUL byte at offset {nul}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"is not UTF-8 (byte offset {exc.start})") from None
    if bracket_depth(text) > MAX_DEPTH:
        raise _fail(path, f"nested more than {MAX_DEPTH} levels deep")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(path, _yaml_problem(exc)) from None
    except RecursionError:
        raise _fail(path, f"nested more than {MAX_DEPTH} levels deep") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _fail(path, f"must be a mapping of settings at the top, not a {type(data).__name__}")
    problem = check_shape(data, "content")
    if problem:
        raise _fail(path, problem)
    if not all(isinstance(key, str) for key in data):
        raise _fail(path, "top-level keys must be setting names (text)")
    return data
