"""HTTP route templates as Azure Functions (ASP.NET Core routing) writes them: literal segments,
`{name}`, `{name?}`, `{name=default}`, `{*rest}`, segments such as `{file}.{ext}`, and
constraints (`{id:int}`, `{id:guid}`, `{n:min(1)}`, `{s:regex(^a)}`, ...), which are checked.

Literals match case-insensitively. When several templates match a path, the most specific wins,
segment by segment: literal, then a segment mixing text and parameters, then a constrained
parameter, then a plain one, then a catch-all (ASP.NET's route precedence)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class RouteError(ValueError):
    """A route template that Functions would refuse."""


@dataclass(frozen=True)
class Param:
    name: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    constraints: tuple[tuple[str, str | None], ...] = ()


Part = str | Param
Segment = list[Part]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _is_int(value: str, bounds: tuple[int, int]) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+", value)) and bounds[0] <= int(value) <= bounds[1]


def _is_number(value: str) -> bool:
    return bool(re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value))


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _ints(args: str | None, count: tuple[int, ...]) -> list[int]:
    values = [a.strip() for a in (args or "").split(",") if a.strip()]
    if len(values) not in count or not all(re.fullmatch(r"-?\d+", v) for v in values):
        raise RouteError(f"constraint arguments {args!r} are not {' or '.join(map(str, count))} integers")
    return [int(v) for v in values]


def _constraint(name: str, args: str | None) -> Callable[[str], bool]:
    """A check for one inline constraint; unknown names are refused, as ASP.NET refuses them."""
    name = name.lower()
    simple: dict[str, Callable[[str], bool]] = {
        "int": lambda v: _is_int(v, _INT32),
        "long": lambda v: _is_int(v, _INT64),
        "bool": lambda v: v.lower() in ("true", "false"),
        "datetime": _is_datetime,
        "decimal": _is_number,
        "double": _is_number,
        "float": _is_number,
        "guid": _is_guid,
        "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
        "required": bool,
        "file": lambda v: "." in v.rsplit("/", 1)[-1],
        "nonfile": lambda v: "." not in v.rsplit("/", 1)[-1],
    }
    if name in simple:
        return simple[name]
    if name == "min":
        (low,) = _ints(args, (1,))
        return lambda v: _is_int(v, _INT64) and int(v) >= low
    if name == "max":
        (high,) = _ints(args, (1,))
        return lambda v: _is_int(v, _INT64) and int(v) <= high
    if name == "range":
        low, high = _ints(args, (2,))
        return lambda v: _is_int(v, _INT64) and low <= int(v) <= high
    if name in ("length", "minlength", "maxlength"):
        bounds = _ints(args, (1, 2) if name == "length" else (1,))
        if name == "minlength":
            return lambda v: len(v) >= bounds[0]
        if name == "maxlength":
            return lambda v: len(v) <= bounds[0]
        low, high = (bounds[0], bounds[0]) if len(bounds) == 1 else bounds
        return lambda v: low <= len(v) <= high
    if name == "regex":
        try:
            pattern = re.compile(args or "", re.IGNORECASE)
        except re.error as exc:
            raise RouteError(f"bad regex constraint {args!r}: {exc}") from exc
        return lambda v: pattern.search(v) is not None
    raise RouteError(f"unknown route constraint '{name}'")


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses (constraint arguments may contain it)."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _parse_param(text: str) -> Param:
    text = text.replace("{{", "{").replace("}}", "}")
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    default = None
    pieces = _split_top(text, "=")
    if len(pieces) > 1:
        text, default = pieces[0], "=".join(pieces[1:])
    optional = text.endswith("?")
    text = text.rstrip("?")
    name, *constraint_texts = _split_top(text, ":")
    if not re.fullmatch(r"[^{}/?*=:()]+", name or ""):
        raise RouteError(f"bad route parameter name {name!r}")
    constraints = []
    for item in constraint_texts:
        m = re.fullmatch(r"(\w+)(?:\((.*)\))?", item.strip(), re.DOTALL)
        if not m:
            raise RouteError(f"bad route constraint {item!r}")
        constraints.append((m.group(1), m.group(2)))
    if catch_all and optional:
        raise RouteError(f"catch-all parameter '{name}' cannot be optional")
    return Param(name, optional, catch_all, default, tuple(constraints))


def parse_template(template: str) -> list[Segment]:
    """Segments of a route template, each a list of literal strings and parameters."""
    text = template.strip()
    text = text[1:] if text.startswith("~") else text
    text = text.strip("/")
    segments: list[Segment] = [[]]
    literal: list[str] = []

    def flush() -> None:
        if literal:
            segments[-1].append("".join(literal))
            literal.clear()

    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "{}" and text[i + 1 : i + 2] == ch:  # {{ and }} are literal braces
            literal.append(ch)
            i += 2
        elif ch == "{":
            j, depth = i + 1, 0
            while j < len(text):
                if text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth = max(0, depth - 1)
                elif text[j] == "}" and depth == 0:
                    if text[j + 1 : j + 2] == "}":
                        j += 2
                        continue
                    break
                j += 1
            else:
                raise RouteError(f"unclosed '{{' in route {template!r}")
            flush()
            segments[-1].append(_parse_param(text[i + 1 : j]))
            i = j + 1
        elif ch == "}":
            raise RouteError(f"unmatched '}}' in route {template!r}")
        elif ch == "/":
            flush()
            if not segments[-1]:
                raise RouteError(f"empty segment in route {template!r}")
            segments.append([])
            i += 1
        else:
            literal.append(ch)
            i += 1
    flush()
    if segments == [[]]:
        return []
    for index, segment in enumerate(segments):
        params = [p for p in segment if isinstance(p, Param)]
        if any(p.catch_all for p in params) and (index != len(segments) - 1 or len(segment) != 1):
            raise RouteError(f"a catch-all parameter must be the whole last segment in {template!r}")
        if any(p.optional for p in params) and index != len(segments) - 1:
            raise RouteError(f"an optional parameter must be in the last segment in {template!r}")
        if any(isinstance(a, Param) and isinstance(b, Param) for a, b in zip(segment, segment[1:], strict=False)):
            raise RouteError(f"two parameters need a literal between them in {template!r}")
    return segments


def _precedence(segment: Segment) -> int:
    if len(segment) == 1 and isinstance(segment[0], str):
        return 1
    if len(segment) > 1:
        return 2
    param = segment[0]
    assert isinstance(param, Param)
    if param.catch_all:
        return 5
    return 3 if param.constraints else 4


@dataclass
class Route:
    template: str
    methods: frozenset[str] | None  # None: every method
    target: Any
    order: int = 0
    segments: list[Segment] = field(init=False)
    pattern: re.Pattern[str] = field(init=False)
    params: list[Param] = field(init=False)
    checks: dict[str, list[Callable[[str], bool]]] = field(init=False)

    def __post_init__(self) -> None:
        self.segments = parse_template(self.template)
        self.params = []
        regex = []
        for segment in self.segments:
            if len(segment) == 1 and isinstance(segment[0], Param):
                p = segment[0]
                group = f"(?P<g{len(self.params)}>{'.*' if p.catch_all else '[^/]+'})"
                optional = p.catch_all or p.optional or p.default is not None
                regex.append(f"(?:/{group})?" if optional else f"/{group}")
                self.params.append(p)
                continue
            regex.append("/")
            for part in segment:
                if isinstance(part, str):
                    regex.append(re.escape(part))
                else:
                    regex.append(f"(?P<g{len(self.params)}>[^/]{'*' if part.optional else '+'})")
                    self.params.append(part)
        self.pattern = re.compile("^" + "".join(regex) + "/?$", re.IGNORECASE | re.DOTALL)
        self.checks = {p.name: [_constraint(n, a) for n, a in p.constraints] for p in self.params}

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(_precedence(s) for s in self.segments)

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for `path` (below the prefix, e.g. "/jobs/1"), or None."""
        m = self.pattern.match(path if path.startswith("/") or not path else "/" + path)
        if m is None:
            return None
        values: dict[str, str] = {}
        for index, param in enumerate(self.params):
            value = m.group(f"g{index}")
            if value in (None, ""):
                if param.default is not None:
                    values[param.name] = param.default
                continue
            if not all(check(value) for check in self.checks[param.name]):
                return None
            values[param.name] = value
        return values


@dataclass(frozen=True)
class Resolved:
    route: Route | None
    params: dict[str, str]
    status: int  # 200 when a route was found, else 404 or 405
    allowed: frozenset[str] = frozenset()


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, template: str, methods: list[str] | None, target: Any) -> Route:
        route = Route(template, frozenset(m.upper() for m in methods) if methods else None, target, len(self.routes))
        self.routes.append(route)
        self.routes.sort(key=lambda r: (r.precedence, r.order))
        return route

    def resolve(self, method: str, path: str) -> Resolved:
        """The route for a request path below the prefix; 405 when only the method is wrong."""
        allowed: set[str] = set()
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if route.methods is None or method.upper() in route.methods:
                return Resolved(route, params, 200)
            allowed |= route.methods
        return Resolved(None, {}, 405 if allowed else 404, frozenset(allowed))
