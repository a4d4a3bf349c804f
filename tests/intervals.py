"""Overlap of recorded runs, for the tests that check a concurrency limit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime


def most_at_once(runs: Iterable[tuple[datetime, datetime]]) -> int:
    """The most runs (start, end) that overlap at any moment; a run ending as another starts does not."""
    runs = list(runs)
    edges = sorted([(start, 1) for start, _ in runs] + [(end, -1) for _, end in runs], key=lambda e: (e[0], e[1]))
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most
