"""A rate limit, as a handler declares it and the API shows it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_RATE = 1000  # starts per period: the log of recent starts is kept in one property
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*(s|sec|second|m|min|minute|h|hour)s?\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` starts in any `period_seconds`."""

    limit: int
    period_seconds: float

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_RATE:
            raise ValueError(f"a rate limit allows 1 to {MAX_RATE} starts per period")
        if not 0.1 <= self.period_seconds <= 86400:
            raise ValueError("a rate limit's period is 0.1 s to 1 day")

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """`10/s`, `100/m`, `5/h`, `20/30s` (20 per 30 seconds)."""
        m = _RATE.match(text)
        if not m:
            raise ValueError(f"{text!r} is not a rate such as 10/s, 100/m or 20/30s")
        return cls(int(m[1]), float(m[2] or 1) * _UNITS[m[3].lower()])

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "period_seconds": self.period_seconds}
