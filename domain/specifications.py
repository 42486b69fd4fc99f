"""Specifications over node properties and the AIP-160 filter subset that builds them.

A specification is a small boolean tree (Comparison, And, Or, Not) evaluated against
a node's properties. ``parse_filter`` turns filter text into one, typing every
literal against the node type's schema, so a bad filter fails before any read.

Semantics: a comparison on a property the node does not have is false (``!=``
included); ``NOT`` negates that. Index access paths rely on exactly this: an index
only holds nodes that have the property.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator

from domain.errors import FieldViolation, Reason, ValidationFailed
from domain.schema import NodeType
from domain.values import PropertyKind, PropertyValue, sortable

OPS = ("=", "!=", "<", "<=", ">", ">=")
RANGE_OPS = ("<", "<=", ">", ">=")
MAX_FILTER_LENGTH = 4096
MAX_NESTING = 32


class Specification:
    """A predicate over a node's properties."""

    def is_satisfied_by(self, properties: dict[str, PropertyValue]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def shape(self) -> str:
        """The specification with every literal replaced by ``?`` (plan-cache key)."""
        raise NotImplementedError  # pragma: no cover

    def render(self) -> str:
        raise NotImplementedError  # pragma: no cover

    def __and__(self, other: "Specification") -> "Specification":
        return And((self, other))

    def __or__(self, other: "Specification") -> "Specification":
        return Or((self, other))

    def __invert__(self) -> "Specification":
        return Not(self)


_COMPARE: dict[str, Callable[[object, object], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def _render_literal(value: PropertyValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return '"' + value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") + '"'
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


@dataclass(frozen=True)
class Comparison(Specification):
    property: str
    op: str
    value: PropertyValue

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown operator {self.op!r}")

    def is_satisfied_by(self, properties: dict[str, PropertyValue]) -> bool:
        if self.property not in properties:
            return False
        actual, expected = sortable(properties[self.property]), sortable(self.value)
        if isinstance(actual, str) != isinstance(expected, str):
            return False  # kinds never mix; the parser types literals against the schema
        return _COMPARE[self.op](actual, expected)

    def shape(self) -> str:
        return f"{self.property} {self.op} ?"

    def render(self) -> str:
        return f"{self.property} {self.op} {_render_literal(self.value)}"


@dataclass(frozen=True)
class And(Specification):
    parts: tuple[Specification, ...]

    def is_satisfied_by(self, properties: dict[str, PropertyValue]) -> bool:
        return all(p.is_satisfied_by(properties) for p in self.parts)

    def shape(self) -> str:
        return "(" + " AND ".join(p.shape() for p in self.parts) + ")"

    def render(self) -> str:
        return "(" + " AND ".join(p.render() for p in self.parts) + ")"


@dataclass(frozen=True)
class Or(Specification):
    parts: tuple[Specification, ...]

    def is_satisfied_by(self, properties: dict[str, PropertyValue]) -> bool:
        return any(p.is_satisfied_by(properties) for p in self.parts)

    def shape(self) -> str:
        return "(" + " OR ".join(p.shape() for p in self.parts) + ")"

    def render(self) -> str:
        return "(" + " OR ".join(p.render() for p in self.parts) + ")"


@dataclass(frozen=True)
class Not(Specification):
    part: Specification

    def is_satisfied_by(self, properties: dict[str, PropertyValue]) -> bool:
        return not self.part.is_satisfied_by(properties)

    def shape(self) -> str:
        return f"NOT {self.part.shape()}"

    def render(self) -> str:
        return f"NOT {self.part.render()}"


@dataclass(frozen=True)
class MatchAll(Specification):
    """The empty filter."""

    def is_satisfied_by(self, properties: dict[str, PropertyValue]) -> bool:
        return True

    def shape(self) -> str:
        return ""

    def render(self) -> str:
        return ""


MATCH_ALL = MatchAll()


def conjuncts(spec: Specification) -> tuple[Specification, ...]:
    """The top-level AND terms of a specification (flattened)."""
    if isinstance(spec, MatchAll):
        return ()
    if isinstance(spec, And):
        out: list[Specification] = []
        for p in spec.parts:
            out.extend(conjuncts(p))
        return tuple(out)
    return (spec,)


def all_of(parts: tuple[Specification, ...] | list[Specification]) -> Specification:
    parts = tuple(parts)
    if not parts:
        return MATCH_ALL
    return parts[0] if len(parts) == 1 else And(parts)


# --- the AIP-160 subset --------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    kind: str  # IDENT STRING NUMBER OP LPAREN RPAREN AND OR NOT EOF
    text: str
    pos: int
    value: object = None


_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"|')
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


class _FilterError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                break
            esc = text[i + 1]
            if esc not in _ESCAPES:
                raise _FilterError(f"unknown escape \\{esc} in string", i)
            out.append(_ESCAPES[esc])
            i += 2
            continue
        if ch == quote:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise _FilterError("unterminated string literal", start)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        m = _TOKEN_RE.match(text, i)
        if not m:
            raise _FilterError(f"unexpected character {text[i]!r}", i)
        kind = m.lastgroup
        if kind == "ws":
            i = m.end()
            continue
        if kind == "string":
            value, end = _read_string(text, i)
            tokens.append(_Token("STRING", text[i:end], i, value))
            i = end
            continue
        word = m.group(0)
        if kind == "ident" and word in ("AND", "OR", "NOT"):
            tokens.append(_Token(word, word, i))
        elif kind == "number":
            is_float = any(c in word for c in ".eE")
            tokens.append(_Token("NUMBER", word, i, float(word) if is_float else int(word)))
        else:
            tokens.append(_Token({"op": "OP", "lparen": "LPAREN", "rparen": "RPAREN", "ident": "IDENT"}[kind or ""],
                                 word, i))
        i = m.end()
    tokens.append(_Token("EOF", "", len(text)))
    return tokens


def _parse_timestamp(text: str) -> datetime | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", text):
        return None
    try:
        return datetime.fromisoformat(text.replace("z", "Z")).astimezone(timezone.utc)
    except (ValueError, OverflowError):  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return None


class _Parser:
    def __init__(self, text: str, node_type: NodeType) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.node_type = node_type
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> Specification:
        if self.peek().kind == "EOF":
            return MATCH_ALL
        spec = self.expr()
        tok = self.peek()
        if tok.kind != "EOF":
            raise _FilterError(f"unexpected {tok.text!r}", tok.pos)
        return spec

    def expr(self) -> Specification:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _FilterError(f"filter nests deeper than {MAX_NESTING} levels", self.peek().pos)
        parts = [self.conjunction()]
        while self.peek().kind == "OR":
            self.take()
            parts.append(self.conjunction())
        self.depth -= 1
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conjunction(self) -> Specification:
        parts = [self.unary()]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.take()
            elif kind not in ("IDENT", "NOT", "LPAREN"):  # juxtaposition is AND too (AIP-160)
                break
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Specification:
        tok = self.peek()
        if tok.kind == "NOT":
            self.take()
            self.depth += 1  # NOT NOT NOT ... nests too
            if self.depth > MAX_NESTING:
                raise _FilterError(f"filter nests deeper than {MAX_NESTING} levels", tok.pos)
            inner = self.unary()
            self.depth -= 1
            return Not(inner)
        if tok.kind == "LPAREN":
            self.take()
            if self.peek().kind == "RPAREN":
                raise _FilterError("empty parentheses", self.peek().pos)
            inner = self.expr()
            close = self.take()
            if close.kind != "RPAREN":
                raise _FilterError("expected ')'" + (f" but found {close.text!r}" if close.text else " before the end"),
                                   close.pos)
            return inner
        return self.comparison()

    def comparison(self) -> Specification:
        name = self.take()
        if name.kind != "IDENT":
            what = repr(name.text) if name.text else "the end of the filter"
            raise _FilterError(f"expected a property name but found {what}", name.pos)
        if name.text in ("true", "false"):
            raise _FilterError(f"expected a property name but found {name.text!r}", name.pos)
        pdef = self.node_type.property_def(name.text)
        if pdef is None:
            raise _FilterError(f"node type {self.node_type.name!r} has no property {name.text!r}", name.pos)
        op = self.take()
        if op.kind != "OP":
            what = repr(op.text) if op.text else "the end of the filter"
            raise _FilterError(f"expected a comparison operator after {name.text!r} but found {what}", op.pos)
        lit = self.take()
        value = self.literal(lit, pdef.kind, name.text)
        if pdef.kind is PropertyKind.BOOL and op.text not in ("=", "!="):
            raise _FilterError(f"BOOL property {name.text!r} supports only = and !=", op.pos)
        return Comparison(name.text, op.text, value)

    def literal(self, tok: _Token, kind: PropertyKind, prop: str) -> PropertyValue:
        def wrong(expected: str) -> _FilterError:
            found = repr(tok.text) if tok.text else "the end of the filter"
            return _FilterError(f"{prop!r} is {kind.value}: expected {expected}, found {found}", tok.pos)

        if kind is PropertyKind.STRING:
            if tok.kind != "STRING":
                raise wrong("a quoted string")
            return str(tok.value)
        if kind is PropertyKind.INT:
            if tok.kind != "NUMBER" or not isinstance(tok.value, int):
                raise wrong("an integer")
            if not -(2**63) <= tok.value < 2**63:
                raise _FilterError(f"integer {tok.text} is out of the 64-bit range", tok.pos)
            return tok.value
        if kind is PropertyKind.DOUBLE:
            if tok.kind != "NUMBER":
                raise wrong("a number")
            value = float(tok.value)  # type: ignore[arg-type]
            if value != value or value in (float("inf"), float("-inf")):
                raise _FilterError(f"number {tok.text} is not finite", tok.pos)
            return value
        if kind is PropertyKind.BOOL:
            if tok.kind != "IDENT" or tok.text not in ("true", "false"):
                raise wrong("true or false")
            return tok.text == "true"
        if tok.kind != "STRING":
            raise wrong('an RFC 3339 timestamp string such as "2024-01-31T12:00:00Z"')
        ts = _parse_timestamp(str(tok.value))
        if ts is None:
            raise wrong('an RFC 3339 timestamp string such as "2024-01-31T12:00:00Z"')
        return ts


def parse_filter(text: str, node_type: NodeType, *, field: str = "filter") -> Specification:
    """Parse an AIP-160 subset filter, typed against ``node_type``.

    Raises ValidationFailed(reason=INVALID_FILTER) with a field violation on ``field``.
    """
    text = text or ""
    try:
        if len(text) > MAX_FILTER_LENGTH:
            raise _FilterError(f"filter is longer than {MAX_FILTER_LENGTH} characters", MAX_FILTER_LENGTH)
        return _Parser(text, node_type).parse()
    except _FilterError as exc:
        description = f"{exc.message} (at offset {exc.pos})"
        raise ValidationFailed(f"invalid {field}: {description}", reason=Reason.INVALID_FILTER,
                               violations=[FieldViolation(field, description)],
                               metadata={"offset": str(exc.pos)}) from None


def iter_comparisons(spec: Specification) -> Iterator[Comparison]:
    if isinstance(spec, Comparison):
        yield spec
    elif isinstance(spec, (And, Or)):
        for p in spec.parts:
            yield from iter_comparisons(p)
    elif isinstance(spec, Not):
        yield from iter_comparisons(spec.part)
