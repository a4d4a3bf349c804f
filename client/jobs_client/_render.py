"""How the command line shows things: JSON on stdout for scripts, or rich tables and key facts
for people; progress bars and messages always on stderr."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from jobs_client.errors import ApiError, BatchIncomplete, JobsError
from jobs_client.models import Job, JobType, JobTypes, Operation, Schedule

STATUS_STYLES = {
    "queued": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "dead_lettered": "red",
    "cancelled": "magenta",
    "failed": "red",
}


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # piped, redirected or logged: never cut or wrap lines at 80 columns
        console = Console(stderr=stderr, highlight=False, width=10_000)
    return console


def stdout() -> Console:
    return _console()


def stderr() -> Console:
    return _console(stderr=True)


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _time(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    return value if isinstance(value, str) else ""


def _short_time(raw: Mapping[str, Any], name: str) -> str:
    """2025-01-31T12:00:00.123Z as 2025-01-31 12:00:00 (UTC), for tables."""
    return _time(raw, name).replace("T", " ")[:19]


# --- JSON ------------------------------------------------------------------------------------


def write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def write_json_array(items: Iterable[Mapping[str, Any]]) -> None:
    """A JSON array with one item per line, written as the items come (a listing can be long).
    Nothing is written until the first page has come: a service that cannot be reached leaves
    stdout empty, not holding a lone `[`."""
    rest = iter(items)
    first = next(rest, None)
    sys.stdout.write("[")
    for n, item in enumerate(itertools.chain([first] if first is not None else [], rest)):
        sys.stdout.write(("," if n else "") + "\n" + json.dumps(item, separators=(",", ":"), default=str))
    sys.stdout.write("\n]\n")
    sys.stdout.flush()


# --- people ----------------------------------------------------------------------------------


def _facts(rows: list[tuple[str, str | Text]]) -> Text:
    """One `name  value` line per fact that has a value (easy to read, and to grep)."""
    shown = [(name, value) for name, value in rows if value != ""]
    width = max((len(name) for name, _ in shown), default=0)
    lines = [Text(name.ljust(width), style="bold") + "  " + (value if isinstance(value, Text) else Text(value))
             for name, value in shown]  # fmt: skip
    return Text("\n").join(lines)


def job_facts(job: Job) -> Text:
    raw = job.raw
    rows: list[tuple[str, str | Text]] = [
        ("id", job.id),
        ("type", job.type),
        ("status", _status(job.status)),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("priority", job.priority if job.priority != "normal" else ""),
        ("created", _time(raw, "created_at")),
        ("due", _time(raw, "due_at") if raw.get("due_at") != raw.get("created_at") else ""),
        ("started", _time(raw, "started_at")),
        ("finished", _time(raw, "finished_at")),
        ("payload", _short(job.payload) if job.payload is not None else ""),
        ("result", _short(job.result) if job.result is not None else ""),
        ("last error", _short(job.last_error) if job.last_error else ""),
        ("errors", str(len(job.errors)) if job.errors else ""),
        ("held by", _hold(job)),
    ]
    return _facts(rows)


HOLDS = {"pause": "its type is paused", "concurrency_limit": "its type's concurrency limit",
         "rate_limit": "its type's rate limit"}  # fmt: skip


def _hold(job: Job) -> str:
    """Why a queued job has not started, when flow control holds it back."""
    if job.held_by is None:
        return ""
    reason = HOLDS.get(job.held_by.reason, job.held_by.reason)
    until = _time(job.raw.get("held_by") or {}, "until")
    if not until:
        return reason
    return f"{reason}; starts at {until}" if job.held_by.reason == "rate_limit" else f"{reason}; asks again at {until}"


def operation_facts(op: Operation) -> Text:
    raw = op.raw
    if op.filter is not None:
        target = " ".join(f"{k}={v}" for k, v in op.filter.items() if v is not None) or "(defaults)"
    else:
        target = f"{op.ids_count} id(s)" if op.ids_count is not None else ""
    rows: list[tuple[str, str | Text]] = [
        ("id", op.id),
        ("action", op.action),
        ("status", _status(op.status)),
        ("target", target),
        ("matched", str(op.matched)),
        ("applied", str(op.applied)),
        ("skipped", str(op.skipped)),
        ("failed", str(op.failed)),
        ("created", _time(raw, "created_at")),
        ("finished", _time(raw, "finished_at")),
    ]
    rows += [("error" if n == 0 else "", f"{e.id}: {_short(e.error, 120)}") for n, e in enumerate(op.errors[:5])]
    if len(op.errors) > 5:
        rows.append(("", f"... and {len(op.errors) - 5} more"))
    return _facts(rows)


def jobs_table(jobs: Iterable[Job], width: int) -> Table:
    """ID, type, status, attempt, due time (UTC) and last error, in `width` columns: the last error
    is cut to what room is left (and left out when there is too little)."""
    rows: list[tuple[str, str, Text, str, str, str]] = [
        (job.id, job.type, _status(job.status), f"{job.attempt}/{job.max_attempts}", _short_time(job.raw, "due_at"),
         job.last_error or "")
        for job in jobs
    ]  # fmt: skip
    headers = ("ID", "TYPE", "STATUS", "ATTEMPT", "DUE (UTC)")
    fixed = sum(max([len(h), *(len(str(r[i])) for r in rows)]) + 2 for i, h in enumerate(headers))
    room = width - fixed
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in headers:
        table.add_column(name, no_wrap=True, justify="right" if name == "ATTEMPT" else "left")
    if room >= 12:
        table.add_column("LAST ERROR", no_wrap=True, overflow="ellipsis", max_width=room)
    for job_id, job_type, status, attempt, due, last_error in rows:
        extra = [Text(_short(last_error, room))] if room >= 12 else []
        table.add_row(job_id, job_type, status, attempt, due, *extra)
    return table


def type_state(t: JobType) -> Text:
    """`active`, or `paused` with what pauses it when that is not (only) its own pause."""
    if not t.paused:
        return Text("active", style="green")
    by = "" if list(t.paused_by) in ([], ["type"]) else f" ({', '.join(t.paused_by)})"
    return Text(f"paused{by}", style="yellow")


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def types_table(types: JobTypes) -> Table:
    """Each type's priority, whether it is paused, its limits, the attempts holding a slot and
    the jobs waiting for one."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("TYPE", "PRIORITY", "STATE", "CONCURRENCY", "RATE", "RUNNING", "WAITING"):
        table.add_column(name, no_wrap=True)
    for t in types.types:
        table.add_row(t.type, t.priority, type_state(t), str(t.max_concurrency or "-"), str(t.rate_limit or "-"),
                      _count(t.running), _count(t.waiting))  # fmt: skip
    return table


def type_facts(t: JobType) -> Text:
    rows: list[tuple[str, str | Text]] = [
        ("type", t.type),
        ("state", type_state(t)),
        ("priority", t.priority),
        ("max concurrency", str(t.max_concurrency or "none")),
        ("rate limit", str(t.rate_limit or "none")),
        ("running", "" if t.running is None else str(t.running)),
        ("waiting", "" if t.waiting is None else f"{t.waiting} for a slot"),
        ("released", "" if t.released is None else f"{t.released} parked job{'s' if t.released != 1 else ''}"),
        ("woken", "" if not t.woken else f"{t.woken} waiting jobs woken to start now or take a new start"),
    ]
    return _facts(rows)


def health_facts(body: Mapping[str, Any]) -> Text:
    checks = body.get("checks")
    status = str(body.get("status", ""))
    rows: list[tuple[str, str | Text]] = [("status", Text(status, style="green" if status == "ok" else "red"))]
    if isinstance(checks, Mapping):
        rows += [
            (str(name), Text(str(result), style="green" if result == "ok" else "red"))
            for name, result in checks.items()
        ]
    return _facts(rows)


# --- progress --------------------------------------------------------------------------------


def _progress(*columns: Any) -> Progress:
    """Rich's progress display on stderr, only when stderr is a terminal; gone when done."""
    console = stderr()
    return Progress(
        *columns,
        console=console,
        transient=True,
        disable=not console.is_terminal,
        redirect_stdout=False,
        redirect_stderr=False,
    )


# The progress display on screen, if any: a note goes through its console, which prints it above
# the display instead of through the display's lines.
_showing: list[Progress] = []


@contextmanager
def _shown(progress: Progress) -> Iterator[Progress]:
    with progress:
        _showing.append(progress)
        try:
            yield progress
        finally:
            _showing.pop()


@contextmanager
def spinner(description: str) -> Iterator[tuple[Progress, Any]]:
    """A spinner with a changing description."""
    with _shown(_progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())) as progress:
        yield progress, progress.add_task(description, total=None)


@contextmanager
def bar(description: str, total: int | None) -> Iterator[tuple[Progress, Any]]:
    """A progress bar with counts."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TimeElapsedColumn())  # fmt: skip
    with _shown(_progress(*columns)) as progress:
        yield progress, progress.add_task(description, total=total)


# --- errors ----------------------------------------------------------------------------------


def error(exc: JobsError, as_json: bool, lines: Sequence[int] | None = None, batch_start: int = 0) -> None:
    """Say what went wrong, on stderr. With `lines` (the file line of each job submitted), a job the
    service refused is named by its line: a problem's `index` is its place in the batch that starts
    at job `batch_start`, a BatchIncomplete's its place among all."""

    def line(index: Any, start: int) -> int | None:
        at = start + index if isinstance(index, int) else -1
        return lines[at] if lines is not None and 0 <= at < len(lines) else None

    refused: dict[str, int | None] = {}
    if isinstance(exc, ApiError):
        items = [i for i in exc.problem.get("errors") or [] if isinstance(i, Mapping) and "index" in i]
        refused = {str(i["index"]): line(i["index"], batch_start) for i in items}
    elif isinstance(exc, BatchIncomplete):
        refused = {str(i): line(i, 0) for i in exc.failures}
    if as_json:
        data: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, ApiError):
            data.update(status=exc.status, code=exc.code, detail=exc.detail, problem=dict(exc.problem))
        if isinstance(exc, BatchIncomplete):
            data.update(failures={str(i): why for i, why in exc.failures.items()},
                        submitted=[j.raw if j else None for j in exc.jobs])  # fmt: skip
        if lines is not None and refused:
            data["lines"] = refused  # index (as in `errors` or `failures`) -> line in the file
        sys.stderr.write(json.dumps(data, default=str) + "\n")
        return
    console = stderr()
    console.print(Text("error: ", style="bold red") + Text(str(exc)))
    if isinstance(exc, ApiError):
        for item in exc.problem.get("errors") or []:
            if isinstance(item, Mapping):
                at = refused.get(str(item.get("index")))
                where = f"  line {at}: " if at else f"  job {item['index']}: " if "index" in item else "  "
                console.print(Text(where + str(item.get("detail") or item.get("error") or item)))
        known = exc.problem.get("known_types")
        if isinstance(known, list):
            console.print(Text("  known types: " + ", ".join(map(str, known))))
    if isinstance(exc, BatchIncomplete) and lines is not None:
        for index, why in exc.failures.items():
            console.print(Text(f"  line {refused.get(str(index))}: not stored: {why}"))


def note(message: str) -> None:
    (_showing[-1].console if _showing else stderr()).print(Text(message))


# --- schedules -----------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _state(s: Schedule) -> Text:
    return Text("paused", style="yellow") if s.paused else Text("active", style="green")


def schedule_facts(s: Schedule) -> Text:
    """The schedule, with its next fire times in UTC and in its zone's local time."""
    job = s.job
    rows: list[tuple[str, str | Text]] = [
        ("id", s.id),
        ("name", s.name or ""),
        ("cron", s.cron),
        ("time zone", s.time_zone),
        ("state", _state(s)),
        ("job", job.type + (f" payload={_short(job.payload, 120)}" if job.payload is not None else "")
         + (f" max_attempts={job.max_attempts}" if job.max_attempts else "")
         + (f" priority={job.priority}" if job.priority else "")),
        ("overlap", s.overlap),
        ("catch up", s.catch_up),
        ("fired", str(s.fired)),
        ("skipped", str(s.skipped) + (f" (last: {s.last_skip_reason}, {_when(s.last_skip_at)} UTC)"
                                      if s.last_skip_reason else "")),
        ("last fire", f"{_when(s.last_fire_at)} UTC, job {s.last_job_id}" if s.last_job_id else ""),
        ("revision", str(s.revision)),
    ]  # fmt: skip
    for n, fire in enumerate(s.next_fires):
        local = fire.local.isoformat() if fire.local else ""
        rows.append(("next fires" if n == 0 else "", f"{_when(fire.at)} UTC   {local}"))
    for n, made in enumerate(s.recent_fires):
        rows.append(("recent fires" if n == 0 else "", f"{_when(made.at)} UTC   job {made.job_id}"))
    return _facts(rows)


def schedules_table(schedules: Iterable[Schedule]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("ID", "NAME", "CRON", "TIME ZONE", "TYPE", "STATE", "NEXT (UTC)", "FIRED", "SKIPPED"):
        table.add_column(name, no_wrap=True, justify="right" if name in ("FIRED", "SKIPPED") else "left")
    for s in schedules:
        table.add_row(s.id, s.name or "", s.cron, s.time_zone, s.job.type, _state(s), _when(s.next_fire_at),
                      str(s.fired), str(s.skipped))  # fmt: skip
    return table
