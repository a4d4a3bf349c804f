"""The in-process priority gate: normal work waits while high work is in progress, low work while
either is, each wait bounded so nothing starves."""

from __future__ import annotations

import asyncio

from shared.job import Priority
from shared.priority import PriorityGate


async def _scenario(gate: PriorityGate, first: Priority, then: Priority, hold: float) -> list[str]:
    order: list[str] = []

    async def run(name: str, priority: Priority, seconds: float) -> None:
        async with gate.turn(priority):
            order.append(f"start {name}")
            await asyncio.sleep(seconds)
            order.append(f"end {name}")

    a = asyncio.create_task(run("a", first, hold))
    await asyncio.sleep(0.01)
    await asyncio.gather(run("b", then, 0), a)
    return order


def test_normal_work_starts_after_the_high_work_in_progress():
    order = asyncio.run(_scenario(PriorityGate(), Priority.HIGH, Priority.NORMAL, 0.1))
    assert order == ["start a", "end a", "start b", "end b"]


def test_low_work_waits_for_normal_but_high_work_never_waits():
    assert asyncio.run(_scenario(PriorityGate(), Priority.NORMAL, Priority.LOW, 0.1))[:2] == ["start a", "end a"]
    assert asyncio.run(_scenario(PriorityGate(), Priority.LOW, Priority.HIGH, 0.1))[:2] == ["start a", "start b"]
    assert asyncio.run(_scenario(PriorityGate(), Priority.NORMAL, Priority.NORMAL, 0.1))[:2] == ["start a", "start b"]


def test_the_wait_is_bounded_so_lower_priorities_never_starve():
    order = asyncio.run(_scenario(PriorityGate(max_wait=0.05), Priority.HIGH, Priority.LOW, 0.5))
    assert order[:2] == ["start a", "start b"]  # b gave up waiting after 0.05 s
