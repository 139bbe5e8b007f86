"""A minimal, honest GraphQL parser for the query shapes a runner autoscaler sends.

Supported: one operation (``query``, named or not, or a bare ``{ ... }``; with
``operationName`` when the document has several), variable definitions with defaults,
aliases, arguments whose values are variables, ints, floats, strings, booleans, null,
enums, lists and objects, and nested selection sets. Not supported (answered as a
GraphQL error, never guessed at): fragments, directives, mutations, subscriptions, block
strings. Syntax follows the GraphQL specification (October 2021), section 2.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$&()\:=@\[\]{|}])
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<string>"(?:[^"\\\n\r]|\\.)*")
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    """,
    re.VERBOSE,
)


class GraphQLSyntaxError(ValueError):
    """A document the parser cannot read; ``line``/``column`` are 1-based."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class EnumValue(str):
    """An enum literal (``PENDING``), told apart from a string (``"PENDING"``)."""


@dataclasses.dataclass(frozen=True)
class Var:
    name: str


@dataclasses.dataclass
class Field:
    name: str
    alias: str | None
    args: dict[str, Any]
    selections: list[Field]
    line: int
    column: int

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclasses.dataclass
class Operation:
    kind: str
    name: str | None
    variables: dict[str, Any]  # name -> default (None when absent)
    selections: list[Field]


@dataclasses.dataclass
class _Tok:
    kind: str
    text: str
    line: int
    column: int


def _tokens(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise GraphQLSyntaxError(f"Parse error on {source[pos]!r}", line, pos - line_start + 1)
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "string" and text.startswith('"""'):
            raise GraphQLSyntaxError("sim: block strings are not supported", line)
        if kind != "skip":
            out.append(_Tok(kind, text, line, pos - line_start + 1))
        for offset, char in enumerate(text):
            if char == "\n":
                line, line_start = line + 1, pos + offset + 1
        pos = match.end()
    out.append(_Tok("eof", "", line, pos - line_start + 1))
    return out


class _Parser:
    def __init__(self, source: str) -> None:
        self.toks = _tokens(source)
        self.i = 0

    def peek(self, text: str | None = None) -> bool:
        tok = self.toks[self.i]
        return text is None or tok.text == text and tok.kind in {"punct", "name", "spread"}

    def take(self, text: str | None = None, kind: str | None = None) -> _Tok:
        tok = self.toks[self.i]
        if (text is not None and tok.text != text) or (kind is not None and tok.kind != kind):
            want = text or kind
            shown = tok.text or "end of file"
            raise GraphQLSyntaxError(f"Expected {want}, actual: {shown!r}", tok.line, tok.column)
        self.i += 1
        return tok

    def document(self) -> list[Operation]:
        ops = []
        while self.toks[self.i].kind != "eof":
            ops.append(self.operation())
        if not ops:
            raise GraphQLSyntaxError("Unexpected end of document")
        return ops

    def operation(self) -> Operation:
        tok = self.toks[self.i]
        if tok.text == "{":
            return Operation("query", None, {}, self.selection_set())
        if tok.text == "fragment":
            raise GraphQLSyntaxError("sim: fragments are not supported", tok.line, tok.column)
        kind = self.take(kind="name").text
        if kind not in {"query", "mutation", "subscription"}:
            raise GraphQLSyntaxError(f"Unexpected {kind!r}", tok.line, tok.column)
        name = self.take(kind="name").text if self.toks[self.i].kind == "name" else None
        variables: dict[str, Any] = {}
        if self.peek("("):
            self.take("(")
            while not self.peek(")"):
                self.take("$")
                var = self.take(kind="name").text
                self.take(":")
                self.type_ref()
                variables[var] = self.value(const=True) if self._eat("=") else None
            self.take(")")
        self._no_directives()
        return Operation(kind, name, variables, self.selection_set())

    def _eat(self, text: str) -> bool:
        if self.peek(text):
            self.i += 1
            return True
        return False

    def _no_directives(self) -> None:
        tok = self.toks[self.i]
        if tok.text == "@":
            raise GraphQLSyntaxError("sim: directives are not supported", tok.line, tok.column)

    def type_ref(self) -> None:
        if self._eat("["):
            self.type_ref()
            self.take("]")
        else:
            self.take(kind="name")
        self._eat("!")

    def selection_set(self) -> list[Field]:
        self.take("{")
        fields = []
        while not self.peek("}"):
            tok = self.toks[self.i]
            if tok.kind == "spread":
                raise GraphQLSyntaxError("sim: fragments are not supported", tok.line, tok.column)
            fields.append(self.field())
        self.take("}")
        return fields

    def field(self) -> Field:
        first = self.take(kind="name")
        alias, name = None, first.text
        if self._eat(":"):
            alias, name = first.text, self.take(kind="name").text
        args: dict[str, Any] = {}
        if self._eat("("):
            while not self.peek(")"):
                arg = self.take(kind="name").text
                self.take(":")
                args[arg] = self.value(const=False)
            self.take(")")
        self._no_directives()
        selections = self.selection_set() if self.peek("{") else []
        return Field(name, alias, args, selections, first.line, first.column)

    def value(self, *, const: bool) -> Any:
        tok = self.toks[self.i]
        if tok.text == "$" and not const:
            self.i += 1
            return Var(self.take(kind="name").text)
        if tok.text == "[":
            self.i += 1
            items = []
            while not self.peek("]"):
                items.append(self.value(const=const))
            self.take("]")
            return items
        if tok.text == "{":
            self.i += 1
            obj = {}
            while not self.peek("}"):
                key = self.take(kind="name").text
                self.take(":")
                obj[key] = self.value(const=const)
            self.take("}")
            return obj
        self.i += 1
        if tok.kind == "number":
            return float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
        if tok.kind == "string":
            return str(json.loads(tok.text))
        if tok.kind == "name":
            return {"true": True, "false": False, "null": None}.get(tok.text, EnumValue(tok.text))
        raise GraphQLSyntaxError(f"Unexpected {tok.text!r}", tok.line, tok.column)


def parse(source: str, operation_name: str | None = None) -> Operation:
    """The operation to run from ``source`` (by ``operation_name`` when several)."""
    ops = _Parser(source).document()
    if operation_name is not None:
        chosen = [op for op in ops if op.name == operation_name]
        if not chosen:
            raise GraphQLSyntaxError(f'No operation named "{operation_name}"')
        return chosen[0]
    if len(ops) > 1:
        raise GraphQLSyntaxError("An operation name is required")
    return ops[0]


def resolve_value(value: Any, variables: dict[str, Any]) -> Any:
    """Replace variables by their values (missing ones are null)."""
    if isinstance(value, Var):
        return variables.get(value.name)
    if isinstance(value, list):
        return [resolve_value(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve_value(v, variables) for k, v in value.items()}
    return value
