"""`jobs`: the command line, one command per client method.

With --json, stdout holds only JSON (one object, or an array for listings); progress and
messages go to stderr. Exit codes are in EXIT_CODES below, and in `jobs --help`.
"""

import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from jobs_client import _render as render
from jobs_client._core import DEFAULT_URL, MAX_PAGE_SIZE, format_time, parse_rate, resolve_url, type_path
from jobs_client._core import log as client_log
from jobs_client.client import JobsClient
from jobs_client.errors import ClientError, JobsError, NotFound, TooManyRequests, WaitTimeout
from jobs_client.models import Job, JobTypes, Operation, Schedule, parse_time

try:  # the base of click's errors: typer's own since it carries click inside, else click's
    from typer import TyperException as CommandLineError
except ImportError:  # typer before that, on click itself
    from click import ClickException as CommandLineError  # type: ignore[assignment]

OK = 0
UNSUCCESSFUL = 1  # the job or operation ended dead_lettered, cancelled or failed
USAGE = 2  # bad flags or arguments (click's own code for usage errors)
NOT_FOUND = 3
REJECTED = 4  # 400, 401/403, 409, 412, 413, 415, 422
TIMED_OUT = 5
UNAVAILABLE = 6  # 503/429 after retries, unreachable, any 5xx

EXIT_CODES = """\
Exit codes:
  0  success (with --wait or `jobsctl wait`: the job or operation succeeded)
  1  the job or operation ended unsuccessfully (dead_lettered, cancelled, failed)
  2  usage error (bad flags, invalid JSON)
  3  not found (404)
  4  request rejected (400, 401/403, 409, 412, 413, 415, 422)
  5  timed out waiting
  6  service unavailable or unreachable after retries (and any 5xx)"""


class _PlainHelp:
    """`-h/--help` shown as the flag it is: typer would print `-h <bool>` (see `flag`)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class _Command(_PlainHelp, TyperCommand):
    pass


class _Group(_PlainHelp, TyperGroup):
    pass


class _Commands(_Group):
    """With --json, a usage error is written as the JSON object every other error is, on stderr
    (exit 2). Click prints it as text in its standalone mode, so that mode is left to click's
    documented switch (`standalone_mode=False`) and its exit codes are kept."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        given = list(sys.argv[1:] if args is None else args)
        options = given[: given.index("--")] if "--" in given else given
        if not standalone_mode or "--json" not in options:
            return super().main(given, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(given, prog_name, complete_var, standalone_mode=False, **extra)
        except CommandLineError as exc:
            data = {"error": type(exc).__name__, "message": exc.format_message(), "exit_code": exc.exit_code}
            if getattr(exc, "ctx", None) is not None:
                data["usage"] = exc.ctx.get_usage()
            sys.stderr.write(json.dumps(data) + "\n")
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.stderr.write(json.dumps({"error": "Aborted", "message": "aborted"}) + "\n")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else OK)


app = typer.Typer(
    cls=_Commands,
    name="jobs",
    help="Submit, inspect, wait for, cancel and redrive jobs of the serverless job system.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class Settings:
    url: str
    key: str | None
    json: bool
    retries: int


# --- options shared by several commands ------------------------------------------------------


def flag(name: str, help: str) -> Any:
    """An option that takes no value (an empty metavar: typer would print `--json <bool>`)."""
    return typer.Option(name, metavar="", help=help)


JsonFlag = Annotated[bool, flag("--json", "Machine-readable JSON on stdout (and nothing else).")]
StatusOpt = Annotated[
    str | None,
    typer.Option(
        "--status", help="Only jobs in this status: queued, running, succeeded, dead_lettered or cancelled.",
        show_default=False,
    ),
]  # fmt: skip
TypeOpt = Annotated[str | None, typer.Option("--type", help="Only jobs of this type.", show_default=False)]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only jobs due at or after this time: RFC 3339 (2025-01-31T12:00:00Z), a date, or an age (15m, 2h, 7d).",
        show_default=False,
    ),
]
UntilOpt = Annotated[
    str | None,
    typer.Option("--until", help="Only jobs due before this time (same forms as --since).", show_default=False),
]


class Priority(str, Enum):  # for typer's choices (it takes Enum classes)
    high = "high"
    normal = "normal"
    low = "low"


WaitFlag = Annotated[bool, flag("--wait", "Wait until it ends; the exit code says how it ended.")]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", min=0, help="With --wait: give up after this many seconds (exit 5).", show_default=False),
]
PollOpt = Annotated[
    float | None,
    typer.Option(
        "--poll-interval", min=0.05, help="Seconds between looks (default: as the service says).", show_default=False
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key", help="Send this Idempotency-Key: the same request again returns the same result.",
        show_default=False,
    ),
]  # fmt: skip


@app.callback()
def _global_options(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option("--url", envvar="JOBS_URL", help="The service's root URL (…/api is optional).")
    ] = DEFAULT_URL,
    key: Annotated[
        str | None,
        typer.Option("--key", envvar="JOBS_KEY", help="Function key, sent as x-functions-key.", show_default=False),
    ] = None,
    json_output: JsonFlag = False,
    retries: Annotated[
        int,
        typer.Option("--retries", envvar="JOBS_RETRIES", min=0, max=20, help="Retries on 429/503/connection errors."),
    ] = 5,
) -> None:
    try:
        url = resolve_url(url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--url") from None
    ctx.obj = Settings(url=url, key=key or None, json=json_output, retries=retries)


# --- plumbing --------------------------------------------------------------------------------


def exit_code(exc: JobsError) -> int:
    if isinstance(exc, WaitTimeout):
        return TIMED_OUT
    if isinstance(exc, NotFound):
        return NOT_FOUND
    if isinstance(exc, ClientError) and not isinstance(exc, TooManyRequests):
        return REJECTED
    return UNAVAILABLE  # 5xx, still throttled, unreachable, an incomplete batch, a garbled answer


@contextmanager
def session(ctx: typer.Context, json_flag: bool) -> Iterator[tuple[JobsClient, Settings]]:
    """A client for one command; a JobsError becomes a message on stderr and its exit code."""
    settings: Settings = ctx.obj
    settings.json = settings.json or json_flag
    # Each retry said on stderr as it happens: an app that is down takes some 10 s of retries to
    # report, and a silent wait that long looks hung. Not with --json, whose stderr is JSON.
    retries = None if settings.json else _RetryNotes()
    if retries is not None:
        client_log.addHandler(retries)
        client_log.setLevel(logging.INFO)
    try:
        with JobsClient(settings.url, settings.key, retries=settings.retries) as client:
            yield client, settings
    except JobsError as exc:
        if isinstance(exc, WaitTimeout):
            show(settings, exc.last)  # the state it was left in is still the answer
        render.error(exc, settings.json)
        raise typer.Exit(exit_code(exc)) from None
    finally:
        if retries is not None:
            client_log.removeHandler(retries)


class _RetryNotes(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        render.note(record.getMessage())


def usage(message: str, param: str | None = None) -> NoReturn:
    """A usage error (exit 2), naming `param` when one is to blame."""
    raise typer.BadParameter(message, param_hint=param)


def given_type(value: str) -> str:
    """A TYPE argument, checked before anything is sent."""
    try:
        type_path(value)
    except ValueError as exc:
        usage(str(exc), "TYPE")
    return value


def given_id(value: str) -> str:
    """An ID argument, checked before anything is sent."""
    if not value.strip():
        usage("the ID is empty", "ID")
    return value.strip()


def show(settings: Settings, thing: Job | Operation) -> None:
    if settings.json:
        render.write_json(dict(thing.raw))
    elif isinstance(thing, Job):
        render.stdout().print(render.job_facts(thing))
    else:
        render.stdout().print(render.operation_facts(thing))


def outcome(thing: Job | Operation) -> int:
    return OK if thing.succeeded else UNSUCCESSFUL


def number_or_default(text: str, param: str, high: int | None = None) -> int | None:
    """A whole number from 1 (to `high`), or None for 'default' (the code's or the type's own)."""
    if text == "default":
        return None
    if text.isdigit() and int(text) >= 1 and (high is None or int(text) <= high):
        return int(text)
    bounds = f"from 1 to {high}" if high else "of at least 1"
    usage(f"{text!r} is not a number {bounds}, nor 'default'", param)


def parse_json(text: str, param: str) -> Any:
    try:
        return strict_json(text)
    except ValueError as exc:
        usage(f"not valid JSON: {exc}", param)


def strict_json(text: str) -> Any:
    """JSON as the API takes it: Python's reader also takes NaN, Infinity and numbers too large
    for a float (1e400), which no JSON body can carry."""

    def number(literal: str) -> float:
        value = float(literal)
        if math.isinf(value):
            raise ValueError(f"{literal} is too large for a JSON number")
        return value

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    return json.loads(text, parse_float=number, parse_constant=refuse)


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def moment(value: str | None, param: str) -> str | None:
    """--since/--until as RFC 3339: an age (2h: two hours ago), or a time or date (UTC if no offset)."""
    if value is None:
        return None
    age = _AGE.match(value)
    if age:
        seconds = float(age[1]) * _UNITS[age[2]]
        return format_time(datetime.now(timezone.utc) - timedelta(seconds=seconds))
    parsed = parse_time(value)
    if parsed is None:
        usage(f"{value!r} is neither an RFC 3339 time, a date, nor an age such as 15m, 2h or 7d", param)
    return format_time(parsed)


def wait_for_job(client: JobsClient, job_id: str, timeout: float | None, poll: float | None) -> Job:
    with render.spinner(f"waiting for job {job_id}") as (progress, task):

        def update(job: Job) -> None:
            progress.update(
                task, description=f"job {job.id}: {job.status} (attempt {job.attempt} of {job.max_attempts})"
            )

        return client.wait(job_id, timeout=timeout, poll_interval=poll, on_progress=update)


def wait_for_operation(client: JobsClient, op: Operation, timeout: float | None, poll: float | None) -> Operation:
    with render.bar(f"{op.action}: starting", total=None) as (progress, task):

        def update(current: Operation) -> None:
            progress.update(
                task,
                total=current.matched or None,
                completed=current.processed,
                description=f"{current.action}: {current.applied} of {current.matched} applied"
                + (f", {current.skipped} skipped" if current.skipped else "")
                + (f", {current.failed} failed" if current.failed else ""),
            )

        return client.wait_operation(op.id, timeout=timeout, on_progress=update, poll_interval=poll)


# --- commands --------------------------------------------------------------------------------


@app.command(cls=_Command)
def submit(
    ctx: typer.Context,
    job_type: Annotated[
        str | None, typer.Argument(metavar="TYPE", help="The job type, e.g. echo.", show_default=False)
    ] = None,
    payload: Annotated[str | None, typer.Option("--payload", help="The payload, as JSON.", show_default=False)] = None,
    max_attempts: Annotated[
        int | None, typer.Option("--max-attempts", min=1, max=100, help="Attempts before it is dead-lettered.")
    ] = None,
    delay: Annotated[
        float | None, typer.Option("--delay", min=0, help="Seconds before the first attempt.", show_default=False)
    ] = None,
    run_at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Start no earlier than this time (RFC 3339; UTC if no offset). Not with --delay.",
            show_default=False,
        ),
    ] = None,
    priority: Annotated[
        Priority | None,
        typer.Option("--priority", help="Its queue (default: the type's, else normal).", show_default=False),
    ] = None,
    idempotency_key: KeyOpt = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help="Submit every job in a JSON Lines file (one job request per line; - for stdin).",
            show_default=False,
        ),
    ] = None,
    wait: WaitFlag = False,
    timeout: TimeoutOpt = None,
    poll_interval: PollOpt = None,
    json_flag: JsonFlag = False,
) -> None:
    """Submit a job, or (--file) many. Prints the job(s) as accepted, or with --wait as ended."""
    if file is not None:
        if job_type is not None or any(v is not None for v in (payload, max_attempts, delay, run_at, priority)):
            usage("give either TYPE (with its options) or --file, not both", "--file")
        if wait:
            usage("--wait takes a single job; follow many with `jobs list`", "--wait")
        lines, requests = read_job_lines(file)
        return submit_file(ctx, requests, lines, idempotency_key, json_flag)
    if job_type is None:
        usage("give a job TYPE, or --file", "TYPE")
    if timeout is not None and not wait:
        usage("--timeout goes with --wait", "--timeout")
    if delay is not None and run_at is not None:
        usage("give --delay or --at, not both", "--at")
    start = None
    if run_at is not None:
        start = parse_time(run_at)
        if start is None:
            usage(f"{run_at!r} is not an RFC 3339 time or a date", "--at")
    body = parse_json(payload, "--payload") if payload is not None else None
    with session(ctx, json_flag) as (client, settings):
        job = client.submit(
            job_type, body, max_attempts=max_attempts, delay_seconds=delay, run_at=start,
            priority=priority.value if priority else None, idempotency_key=idempotency_key,
        )  # fmt: skip
        if not wait:
            show(settings, job)
            return
        job = wait_for_job(client, job.id, timeout, poll_interval)
        show(settings, job)
    raise typer.Exit(outcome(job))


def read_job_lines(file: str) -> tuple[list[int], list[dict[str, Any]]]:
    """Every job request of a JSON Lines file with its line number (from 1, as editors count),
    checked before anything is sent (blank lines and lines starting with # are skipped)."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        usage(f"cannot read {file}: {exc.strerror or exc}", "--file")
    lines: list[int] = []
    requests: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = strict_json(line)
        except ValueError as exc:
            usage(f"line {number} is not valid JSON: {exc}", "--file")
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            usage(f'line {number} is not a job request such as {{"type": "echo", "payload": {{}}}}', "--file")
        lines.append(number)
        requests.append(item)
    if not requests:
        usage(f"{file} holds no job requests", "--file")
    return lines, requests


def submit_file(
    ctx: typer.Context, requests: list[dict[str, Any]], lines: list[int], key: str | None, json_flag: bool
) -> None:
    stored = 0

    def count(n: int) -> None:
        nonlocal stored
        stored = n

    with session(ctx, json_flag) as (client, settings):
        try:
            with render.bar("submitting", total=len(requests)) as (progress, task):

                def update(n: int) -> None:
                    count(n)
                    progress.update(task, completed=n)

                jobs = client.submit_many(requests, on_progress=update, idempotency_key=key)
        except JobsError as exc:
            # The jobs stored before the error stay stored: name them, so a rerun can skip them.
            if exc.stored:
                print_jobs(settings, exc.stored)
            if exc.stored and not settings.json:  # with --json, stderr holds only the error's object
                render.note(f"{len(exc.stored)} of {len(requests)} jobs were submitted before the error "
                            f"(in file order, listed above){_RERUN if key is None else ''}")  # fmt: skip
            # The service names a refused job by its place in its batch of 100: say its line instead.
            render.error(exc, settings.json, lines=lines, batch_start=stored)
            raise typer.Exit(exit_code(exc)) from None
        except KeyboardInterrupt:
            if stored:
                render.note(f"interrupted: {stored} of {len(requests)} jobs were submitted (the first {stored} "
                            f"lines){_RERUN if key is None else ''}")  # fmt: skip
            raise
        print_jobs(settings, jobs)
        render.note(f"submitted {len(jobs)} job{'s' if len(jobs) != 1 else ''}")


# With a key, a second run of the same file stores nothing twice.
_RERUN = "; give --idempotency-key to make a rerun of the same file store each job once"


def print_jobs(settings: Settings, jobs: Iterable[Job]) -> None:
    """Submitted jobs on stdout: their ids, one a line, or with --json an array of them."""
    if settings.json:
        render.write_json_array(dict(j.raw) for j in jobs)
        return
    out = render.stdout()
    for job in jobs:
        out.print(job.id)


@app.command(cls=_Command)
def get(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
    json_flag: JsonFlag = False,
) -> None:
    """Show a job."""
    with session(ctx, json_flag) as (client, settings):
        show(settings, client.get(given_id(job_id)))


@app.command("list", cls=_Command)
def list_jobs(
    ctx: typer.Context,
    status: StatusOpt = None,
    job_type: TypeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Show at most this many jobs (0: all).")] = 50,
    oldest: Annotated[bool, flag("--oldest", "Oldest first (from --since, else the oldest job kept).")] = (False),
    json_flag: JsonFlag = False,
) -> None:
    """List jobs, newest first (by due time); --oldest: oldest first."""
    since_at, until_at = moment(since, "--since"), moment(until, "--until")
    with session(ctx, json_flag) as (client, settings):
        page_size = MAX_PAGE_SIZE if limit == 0 else min(limit + 1, MAX_PAGE_SIZE)
        found = client.list(
            status=status, type=job_type, since=since_at, until=until_at, page_size=page_size,
            order="oldest" if oldest else "newest",
        )  # fmt: skip
        if settings.json:
            render.write_json_array(dict(j.raw) for j in (found if limit == 0 else islice(found, limit)))
            return
        jobs = list(found if limit == 0 else islice(found, limit + 1))
        more = limit != 0 and len(jobs) > limit
        jobs = jobs[:limit] if more else jobs
        if jobs:
            out = render.stdout()
            out.print(render.jobs_table(jobs, out.width))
        render.note(
            f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}" + (" (more: raise --limit, 0 for all)" if more else "")
        )


@app.command(cls=_Command)
def wait(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="Give up after this many seconds (exit 5).")
    ] = None,
    poll_interval: PollOpt = None,
    json_flag: JsonFlag = False,
) -> None:
    """Wait until a job ends; exit 0 if it succeeded, 1 if it was dead-lettered or cancelled."""
    with session(ctx, json_flag) as (client, settings):
        job = wait_for_job(client, given_id(job_id), timeout, poll_interval)
        show(settings, job)
    raise typer.Exit(outcome(job))


def _bulk(
    ctx: typer.Context,
    json_flag: bool,
    start: Callable[[JobsClient], Operation],
    wait: bool,
    timeout: float | None,
    poll: float | None,
) -> None:
    with session(ctx, json_flag) as (client, settings):
        op = start(client)
        if not wait:
            show(settings, op)
            if not settings.json:
                render.note(f"started; follow it with: jobs operation {op.id} --wait")
            return
        op = wait_for_operation(client, op, timeout, poll)
        show(settings, op)
    raise typer.Exit(outcome(op))


def _filters_given(*values: object) -> bool:
    return any(v is not None for v in values)


@app.command(cls=_Command)
def cancel(
    ctx: typer.Context,
    job_id: Annotated[
        str | None, typer.Argument(metavar="ID", help="The job to cancel; without it, filters pick the jobs.")
    ] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Bulk: queued or running (without it: both).", show_default=False)
    ] = None,
    job_type: TypeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    idempotency_key: KeyOpt = None,
    wait: WaitFlag = False,
    timeout: TimeoutOpt = None,
    poll_interval: PollOpt = None,
    json_flag: JsonFlag = False,
) -> None:
    """Cancel a job, or (with filters instead of an ID) start cancelling every matching job."""
    if timeout is not None and not wait:
        usage("--timeout goes with --wait", "--timeout")
    if job_id is not None:
        if _filters_given(status, job_type, since, until):
            usage("give a job ID, or filters (--status, --type, --since, --until) for a bulk cancel, not both", "ID")
        if wait or _filters_given(idempotency_key, poll_interval):
            usage("--wait, --timeout, --poll-interval and --idempotency-key go with a bulk cancel (filters): "
                  "a job's cancel is answered at once", "ID")  # fmt: skip
        with session(ctx, json_flag) as (client, settings):
            show(settings, client.cancel(given_id(job_id)))
        return
    if not _filters_given(status, job_type, since, until):
        usage("give a job ID, or at least one filter (e.g. --status queued to cancel every queued job)", "ID")
    since_at, until_at = moment(since, "--since"), moment(until, "--until")
    start = lambda c: c.cancel_matching(  # noqa: E731
        status=status, type=job_type, since=since_at, until=until_at, idempotency_key=idempotency_key
    )
    _bulk(ctx, json_flag, start, wait, timeout, poll_interval)


@app.command(cls=_Command)
def retry(
    ctx: typer.Context,
    job_id: Annotated[
        str | None, typer.Argument(metavar="ID", help="The job to redrive; without it, filters pick the jobs.")
    ] = None,
    extra_attempts: Annotated[
        int, typer.Option("--extra-attempts", min=1, max=100, help="Attempts the redriven job(s) may spend.")
    ] = 1,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Bulk: dead_lettered or cancelled (without it: both).", show_default=False),
    ] = None,
    job_type: TypeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    idempotency_key: KeyOpt = None,
    wait: WaitFlag = False,
    timeout: TimeoutOpt = None,
    poll_interval: PollOpt = None,
    json_flag: JsonFlag = False,
) -> None:
    """Redrive a dead-lettered or cancelled job, or (with filters instead of an ID) every matching job."""
    if timeout is not None and not wait:
        usage("--timeout goes with --wait", "--timeout")
    if job_id is not None:
        if _filters_given(status, job_type, since, until):
            usage("give a job ID, or filters (--status, --type, --since, --until) for a bulk retry, not both", "ID")
        if idempotency_key is not None:
            usage("--idempotency-key goes with a bulk retry (filters): a second retry of a job is refused anyway",
                  "--idempotency-key")  # fmt: skip
        with session(ctx, json_flag) as (client, settings):
            job = client.retry(given_id(job_id), extra_attempts=extra_attempts)
            if not wait:
                show(settings, job)
                return
            job = wait_for_job(client, job.id, timeout, poll_interval)
            show(settings, job)
        raise typer.Exit(outcome(job))
    if not _filters_given(status, job_type, since, until):
        usage("give a job ID, or at least one filter (e.g. --status dead_lettered)", "ID")
    since_at, until_at = moment(since, "--since"), moment(until, "--until")
    start = lambda c: c.retry_matching(  # noqa: E731
        status=status, type=job_type, since=since_at, until=until_at, extra_attempts=extra_attempts,
        idempotency_key=idempotency_key,
    )  # fmt: skip
    _bulk(ctx, json_flag, start, wait, timeout, poll_interval)


@app.command(cls=_Command)
def operation(
    ctx: typer.Context,
    operation_id: Annotated[str, typer.Argument(metavar="ID", help="The operation's id.")],
    wait: WaitFlag = False,
    timeout: TimeoutOpt = None,
    poll_interval: PollOpt = None,
    json_flag: JsonFlag = False,
) -> None:
    """Show a bulk operation; with --wait, follow it until it ends."""
    if timeout is not None and not wait:
        usage("--timeout goes with --wait", "--timeout")
    with session(ctx, json_flag) as (client, settings):
        op = client.get_operation(given_id(operation_id))
        if not wait:
            show(settings, op)
            return
        op = wait_for_operation(client, op, timeout, poll_interval)
        show(settings, op)
    raise typer.Exit(outcome(op))


@app.command(cls=_Command)
def health(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """Check that the service and its storage answer (exit 0), or not (exit 6)."""
    with session(ctx, json_flag) as (client, settings):
        body = client.health()
        if settings.json:
            render.write_json(dict(body))
        else:
            render.stdout().print(render.health_facts(body))


# --- flow control ----------------------------------------------------------------------------

TypeArg = Annotated[str | None, typer.Argument(metavar="TYPE", help="The job type.", show_default=False)]
AllFlag = Annotated[bool, flag("--all", "Every type (pausing everything is undone by resume --all).")]


@app.command(cls=_Command)
def types(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """List the job types: priority, paused or not, concurrency and rate limits, attempts running."""
    with session(ctx, json_flag) as (client, settings):
        found = client.types()
        if settings.json:
            render.write_json({"paused_all": found.paused_all, "types": [dict(t.raw) for t in found.types]})
            return
        if found.paused_all:
            render.note("every type is paused (resume with: jobsctl resume --all)")
        render.stdout().print(render.types_table(found))


def _pause_or_resume(ctx: typer.Context, job_type: str | None, every: bool, paused: bool, json_flag: bool) -> None:
    if job_type is not None and every:
        usage("give a TYPE or --all, not both", "TYPE")
    if job_type is None and not every:
        usage("give a TYPE or --all", "TYPE")
    if job_type is not None:
        given_type(job_type)
    with session(ctx, json_flag) as (client, settings):
        changed = (client.pause if paused else client.resume)(job_type)
        if settings.json:
            raw = {"paused_all": changed.paused_all, "types": [dict(t.raw) for t in changed.types],
                   "released": changed.released} if isinstance(changed, JobTypes) else dict(changed.raw)  # fmt: skip
            render.write_json(raw)
        elif isinstance(changed, JobTypes):
            render.stdout().print(render.types_table(changed))
            if changed.released is not None:  # after a resume, even none (what was parked runs now)
                render.note(f"{changed.released} parked job{'s' if changed.released != 1 else ''} released")
        else:
            render.stdout().print(render.type_facts(changed))


@app.command(cls=_Command)
def pause(ctx: typer.Context, job_type: TypeArg = None, every: AllFlag = False, json_flag: JsonFlag = False) -> None:
    """Pause a job type (or --all): its jobs stay queued and wait; running ones finish."""
    _pause_or_resume(ctx, job_type, every, True, json_flag)


@app.command(cls=_Command)
def resume(ctx: typer.Context, job_type: TypeArg = None, every: AllFlag = False, json_flag: JsonFlag = False) -> None:
    """Resume a job type (or --all): the jobs that waited run."""
    _pause_or_resume(ctx, job_type, every, False, json_flag)


@app.command(cls=_Command)
def limit(
    ctx: typer.Context,
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="The job type.")],
    concurrency: Annotated[
        str | None,
        typer.Option("--concurrency", help="At most N running at once, across instances; 'default': the code's."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option("--rate", help="At most N starts per period, e.g. 10/s, 100/m, 20/30s; 'default': the code's."),
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Set a job type's concurrency and rate limits (they hold across every instance)."""
    given_type(job_type)
    if concurrency is None and rate is None:
        usage("give --concurrency, --rate or both")
    max_concurrency: int | None | Literal["unchanged"] = "unchanged"
    if concurrency is not None:
        max_concurrency = number_or_default(concurrency, "--concurrency")
    rate_limit: str | None | Literal["unchanged"] = "unchanged"
    if rate is not None:
        rate_limit = None if rate == "default" else rate
        if rate_limit is not None:
            try:
                parse_rate(rate_limit)
            except ValueError as exc:
                usage(f"{exc}, nor 'default' (the code's limit, if it declares one)", "--rate")
    with session(ctx, json_flag) as (client, settings):
        changed = client.set_limits(job_type, max_concurrency=max_concurrency, rate_limit=rate_limit)
        if settings.json:
            render.write_json(dict(changed.raw))
        else:
            render.stdout().print(render.type_facts(changed))


# --- schedules -------------------------------------------------------------------------------

schedules_app = typer.Typer(
    cls=_Group,
    name="schedules",
    help="Recurring schedules: a job at every fire time of a cron expression, in a time zone.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(schedules_app, name="schedules")
ScheduleId = Annotated[str, typer.Argument(metavar="ID", help="The schedule's id.")]
IfRevision = Annotated[
    int | None,
    typer.Option("--if-revision", min=1, show_default=False,
                 help="Only if the schedule is still at this revision (`schedules show` gives it); else exit 4."),
]  # fmt: skip


class Overlap(str, Enum):
    allow = "allow"
    skip = "skip"


class CatchUp(str, Enum):
    once = "once"
    skip = "skip"


def show_schedule(settings: Settings, schedule: Schedule) -> None:
    if settings.json:
        render.write_json(dict(schedule.raw))
    else:
        render.stdout().print(render.schedule_facts(schedule))


@schedules_app.command("create", cls=_Command)
def create_schedule(
    ctx: typer.Context,
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="The job type each fire submits, e.g. echo.")],
    cron: Annotated[
        str,
        typer.Option(
            "--cron", help="5 fields (minute hour day month weekday) or 6 with seconds first, e.g. '30 2 * * *'."
        ),
    ],
    time_zone: Annotated[
        str, typer.Option("--tz", "--time-zone", help="IANA time zone the cron is read in, e.g. Europe/Berlin.")
    ] = "UTC",
    payload: Annotated[
        str | None, typer.Option("--payload", help="The jobs' payload, as JSON.", show_default=False)
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option("--max-attempts", min=1, max=100, help="Attempts of each job (default: the type's).")
    ] = None,
    priority: Annotated[
        Priority | None, typer.Option("--priority", help="The jobs' queue (default: the type's).", show_default=False)
    ] = None,
    overlap: Annotated[
        Overlap, typer.Option("--overlap", help="skip: no job while the previous fire's job has not finished.")
    ] = Overlap.allow,
    catch_up: Annotated[
        CatchUp, typer.Option("--catch-up", help="After downtime: once (one job for the missed fires) or skip.")
    ] = CatchUp.once,
    name: Annotated[str | None, typer.Option("--name", help="A name for people.", show_default=False)] = None,
    paused: Annotated[bool, flag("--paused", "Create it paused (resume it later).")] = False,
    idempotency_key: KeyOpt = None,
    json_flag: JsonFlag = False,
) -> None:
    """Create a schedule; prints it with its next five fire times."""
    body = parse_json(payload, "--payload") if payload is not None else None
    with session(ctx, json_flag) as (client, settings):
        schedule = client.create_schedule(
            job_type, cron, body, time_zone=time_zone, max_attempts=max_attempts,
            priority=priority.value if priority else None, overlap=overlap.value, catch_up=catch_up.value, name=name,
            paused=paused, idempotency_key=idempotency_key,
        )  # fmt: skip
        show_schedule(settings, schedule)


@schedules_app.command("list", cls=_Command)
def list_schedules(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Show at most this many (0: all).")] = 50,
    json_flag: JsonFlag = False,
) -> None:
    """List schedules, oldest first: state, next fire time, counts."""
    with session(ctx, json_flag) as (client, settings):
        page_size = MAX_PAGE_SIZE if limit == 0 else min(limit + 1, MAX_PAGE_SIZE)
        found = client.list_schedules(page_size=page_size)
        items = list(found if limit == 0 else islice(found, limit + 1))
        more = limit != 0 and len(items) > limit
        items = items[:limit] if more else items
        if settings.json:
            render.write_json_array(dict(s.raw) for s in items)
            return
        if items:
            render.stdout().print(render.schedules_table(items))
        render.note(f"{len(items)} schedule{'s' if len(items) != 1 else ''}"
                    + (" (more: raise --limit, 0 for all)" if more else ""))  # fmt: skip


@schedules_app.command("show", cls=_Command)
def show_schedule_command(ctx: typer.Context, schedule_id: ScheduleId, json_flag: JsonFlag = False) -> None:
    """Show a schedule, with its next five fire times in UTC and in its zone."""
    with session(ctx, json_flag) as (client, settings):
        show_schedule(settings, client.get_schedule(given_id(schedule_id)))


@schedules_app.command("update", cls=_Command)
def update_schedule(
    ctx: typer.Context,
    schedule_id: ScheduleId,
    cron: Annotated[
        str | None, typer.Option("--cron", help="A new cron expression; it fires next from now.", show_default=False)
    ] = None,
    time_zone: Annotated[
        str | None, typer.Option("--tz", "--time-zone", help="A new IANA time zone.", show_default=False)
    ] = None,
    job_type: Annotated[
        str | None, typer.Option("--type", help="The job type each fire submits from now on.", show_default=False)
    ] = None,
    payload: Annotated[
        str | None, typer.Option("--payload", help="The jobs' payload, as JSON (replaces it).", show_default=False)
    ] = None,
    max_attempts: Annotated[
        str | None, typer.Option("--max-attempts", help="Attempts of each job, 1-100; 'default': the type's.")
    ] = None,
    priority: Annotated[
        str | None, typer.Option("--priority", help="high, normal or low; 'default': the type's.", show_default=False)
    ] = None,
    overlap: Annotated[Overlap | None, typer.Option("--overlap", help="allow or skip.", show_default=False)] = None,
    catch_up: Annotated[CatchUp | None, typer.Option("--catch-up", help="once or skip.", show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", help="A new name.", show_default=False)] = None,
    no_name: Annotated[bool, flag("--no-name", "Remove the name.")] = False,
    if_revision: IfRevision = None,
    json_flag: JsonFlag = False,
) -> None:
    """Change a schedule's fields (the others stay); prints it with its next five fire times."""
    changes: dict[str, Any] = {}
    if cron is not None:
        changes["cron"] = cron
    if time_zone is not None:
        changes["time_zone"] = time_zone
    if job_type is not None:
        changes["type"] = job_type
    if payload is not None:
        changes["payload"] = parse_json(payload, "--payload")
    if max_attempts is not None:
        changes["max_attempts"] = number_or_default(max_attempts, "--max-attempts", high=100)
    if priority is not None:
        if priority != "default" and priority not in {p.value for p in Priority}:
            usage(f"{priority!r} is not high, normal, low or 'default'", "--priority")
        changes["priority"] = None if priority == "default" else priority
    if overlap is not None:
        changes["overlap"] = overlap.value
    if catch_up is not None:
        changes["catch_up"] = catch_up.value
    if name is not None and no_name:
        usage("give --name or --no-name, not both", "--name")
    if name is not None or no_name:
        changes["name"] = name
    if not changes:
        usage("nothing to change: give at least one option (see --help)", "ID")
    with session(ctx, json_flag) as (client, settings):
        show_schedule(settings, client.update_schedule(given_id(schedule_id), **changes, if_revision=if_revision))


@schedules_app.command("pause", cls=_Command)
def pause_schedule(ctx: typer.Context, schedule_id: ScheduleId, json_flag: JsonFlag = False) -> None:
    """Pause a schedule: it fires nothing until resumed."""
    with session(ctx, json_flag) as (client, settings):
        show_schedule(settings, client.pause_schedule(given_id(schedule_id)))


@schedules_app.command("resume", cls=_Command)
def resume_schedule(ctx: typer.Context, schedule_id: ScheduleId, json_flag: JsonFlag = False) -> None:
    """Resume a schedule from now (fire times missed while paused are not made up)."""
    with session(ctx, json_flag) as (client, settings):
        show_schedule(settings, client.resume_schedule(given_id(schedule_id)))


@schedules_app.command("delete", cls=_Command)
def delete_schedule(
    ctx: typer.Context, schedule_id: ScheduleId, if_revision: IfRevision = None, json_flag: JsonFlag = False
) -> None:
    """Delete a schedule (the jobs it made stay)."""
    with session(ctx, json_flag) as (client, settings):
        client.delete_schedule(given_id(schedule_id), if_revision=if_revision)
        if settings.json:
            render.write_json({"id": schedule_id.strip(), "deleted": True})
        else:
            render.note(f"deleted schedule {schedule_id.strip()}")


def main() -> None:
    invoked_as = Path(sys.argv[0]).name
    app(prog_name=invoked_as if invoked_as in ("jobs", "jobsctl") else "jobs")


if __name__ == "__main__":
    main()
