"""HTTP route templates as Azure Functions writes them: `jobs/{id}`, `{name?}`, `{*rest}`,
constraints such as `{id:int}` or `{id:guid}`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "float": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
}
_PARAM = re.compile(r"^\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?\}$")


@dataclass
class Route:
    template: str
    methods: frozenset[str] | None  # None: every method
    target: Any
    pattern: re.Pattern[str] = field(init=False)
    literals: int = field(init=False)

    def __post_init__(self) -> None:
        parts, literals = [], 0
        for segment in [s for s in self.template.strip("/").split("/") if s]:
            m = _PARAM.match(segment)
            if not m:
                parts.append("/" + re.escape(segment))
                literals += 1
                continue
            catch_all, name, constraint, optional = m.groups()
            body = ".*" if catch_all else _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
            parts.append(f"(?:/(?P<{name}>{body})){'?' if optional or catch_all else ''}")
        self.pattern = re.compile("^" + "".join(parts) + "/?$")
        self.literals = literals

    def match(self, path: str) -> dict[str, str] | None:
        m = self.pattern.match("/" + path.strip("/") if path.strip("/") else "")
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, template: str, methods: list[str] | None, target: Any) -> None:
        self.routes.append(Route(template, frozenset(m.upper() for m in methods) if methods else None, target))
        # Literal segments win over parameters, as in ASP.NET routing.
        self.routes.sort(key=lambda r: -r.literals)

    def resolve(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, route params, path matched some route) for a request path without the prefix."""
        path_matched = False
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            path_matched = True
            if route.methods is None or method.upper() in route.methods:
                return route, params, True
        return None, {}, path_matched
