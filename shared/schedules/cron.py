"""When a schedule fires: a cron expression read in an IANA time zone.

Expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first,
the layout of Azure's NCRONTAB. Each field takes `*`, numbers, names (JAN-DEC, SUN-SAT), ranges
`a-b`, steps `*/n`, `a/n`, `a-b/n` (n below the field's span: 1-59 for seconds) and lists `a,b`;
day-of-month also takes `L` (the last day) and `LW` (the last weekday), day-of-week `5L` (the
last Friday) and `MON#1` (the first Monday).
`GRAMMAR` says exactly that (the OpenAPI document publishes it); cronsim evaluates it, as
Debian's cron does. Like Unix cron (and unlike NCRONTAB), when both day fields are restricted a
day matching either fires: `0 9 1 * MON` is the 1st and every Monday; the first Monday is
`0 9 * * MON#1`.

Daylight saving is ours, not the library's (cronsim adjusts only 5-field expressions, and a
fixed-time 6-field one would skip a day in spring and fire twice in autumn):
- a schedule whose hour field covers every hour follows real time: it fires at every instant
  whose local reading matches. In the hour repeated in autumn it fires in both passes (every 10
  minutes stays every 10 minutes); the hour skipped in spring holds nothing to fire (the clock
  jumps: no time is lost);
- any other schedule names times of day, and each matching wall-clock time fires once: a time in
  the repeated hour at its first pass, a time the spring change skips when the clock jumps
  (`30 2 * * *` in Europe/Berlin fires at 03:00 CEST on the last Sunday of March). Several
  skipped times make one fire at the jump.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

MAX_LENGTH = 200
SECOND = timedelta(seconds=1)
# Keys a zone database may hold that are not places: refused like any unknown zone.
_NOT_ZONES = frozenset({"Factory", "localtime", "posixrules"})


class CronError(ValueError):
    """Not an expression of the grammar (`reason` says what is wrong)."""


class UnsatisfiableCron(ValueError):
    """Well-formed, but no time matches: a range runs backwards (`5-2`), or the days never come
    (30 February)."""


class UnknownZone(ValueError):
    def __init__(self, name: str, suggestion: str | None = None) -> None:
        hint = f"; did you mean {suggestion}?" if suggestion else " (give an IANA name such as Europe/Berlin)"
        super().__init__(f"unknown time zone {name!r}{hint}")
        self.suggestion = suggestion


# --- the grammar ---------------------------------------------------------------------------------


def _names(*names: str) -> str:
    # Either case, as cronsim reads them; JSON Schema patterns have no flags, hence the classes.
    return "|".join("".join(f"[{c}{c.lower()}]" for c in name) for name in names)


_MONTHS = _names("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = _names("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True)
class _Field:
    name: str
    values: str  # as a refusal lists them
    value: str  # a pattern of one value
    step: str  # a pattern of the steps it takes: 1 to `largest_step`
    largest_step: int
    special: str = ""  # alternatives to a plain item (`L`, `MON#1`)

    def pattern(self, step: str | None = None) -> str:
        step = step or self.step
        item = rf"(\*(/({step}))?|({self.value})(-({self.value}))?(/({step}))?{self.special})"
        return rf"{item}(,{item})*"


# A step is at most the field's span less one: a wider one matches only the first value, which
# cronsim accepts, so `*/90` in seconds, meant for every 90 s, would fire once a minute.
_SIXTY = r"[0-5]?[0-9]"
_FIELDS = (
    _Field("second", "0-59", _SIXTY, r"[1-9]|[1-5][0-9]", 59),  # 6-field expressions only
    _Field("minute", "0-59", _SIXTY, r"[1-9]|[1-5][0-9]", 59),
    _Field("hour", "0-23", r"[01]?[0-9]|2[0-3]", r"[1-9]|1[0-9]|2[0-3]", 23),
    _Field("day-of-month", "1-31, `L`, `LW`", r"0?[1-9]|[12][0-9]|3[01]", r"[1-9]|[12][0-9]|30", 30, "|[Ll][Ww]?"),
    _Field("month", "1-12, `JAN`-`DEC`", rf"0?[1-9]|1[0-2]|{_MONTHS}", r"[1-9]|1[01]", 11),
    _Field("day-of-week", "0-7, `SUN`-`SAT`, `5L`, `MON#1`", rf"[0-7]|{_DAYS}", r"[1-6]", 6,  # 7 is Sunday again
           rf"|({'[0-7]|' + _DAYS})(#[1-5]|[Ll])"),
)  # fmt: skip
# Schedules stored before the steps were bounded took any step up to 9999: still read as stored.
_ANY_STEP = r"[1-9][0-9]{0,3}"
FIELDS = tuple(f.pattern() for f in _FIELDS)


def _grammar(fields: tuple[str, ...]) -> str:
    # One expression: 6 fields with seconds, or the last 5, separated by single spaces.
    return rf"^(({fields[0]}) )?{' '.join(f'({f})' for f in fields[1:])}$"


GRAMMAR = _grammar(FIELDS)
_GRAMMAR = re.compile(GRAMMAR)
_STORED_GRAMMAR = re.compile(_grammar(tuple(f.pattern(_ANY_STEP) for f in _FIELDS)))
_FIELD_GRAMMARS = tuple(re.compile(f) for f in FIELDS)
_LAYOUT = (
    "give 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, separated by single "
    "spaces, such as `30 2 * * *` or `*/10 * * * * *`"
)


def _fault(expression: str) -> str:
    """What is wrong with an expression outside the grammar: its layout, or its first bad field."""
    if len(expression) > MAX_LENGTH:
        return f"it is over {MAX_LENGTH} characters"
    parts = expression.split(" ")
    if len(parts) in (5, 6) and "" not in parts:
        skipped = 6 - len(parts)  # a 5-field expression has no second field
        for part, grammar, f in zip(parts, _FIELD_GRAMMARS[skipped:], _FIELDS[skipped:], strict=True):
            if not grammar.fullmatch(part):
                return (f"its {f.name} field `{part}` is not valid: it takes `*`, {f.values}, ranges `a-b`, steps "
                        f"`*/n` (n from 1 to {f.largest_step}) and lists `a,b`")  # fmt: skip
    return _LAYOUT


# --- time zones ----------------------------------------------------------------------------------


@cache
def time_zones() -> tuple[str, ...]:
    """Every IANA zone name this machine knows (the system's database and the tzdata package)."""
    return tuple(sorted(available_timezones() - _NOT_ZONES))


@cache
def _zones_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in time_zones()}


def zone(name: str) -> ZoneInfo:
    """The zone of an IANA name; UnknownZone (with a suggestion when only the case is wrong)."""
    if name not in _known():
        raise UnknownZone(name, _zones_by_folded_name().get(name.casefold()) if isinstance(name, str) else None)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownZone(name) from None


@cache
def _known() -> frozenset[str]:
    return frozenset(time_zones())


# --- the schedule's fire times -------------------------------------------------------------------


class Cron:
    """A cron expression in a time zone. Fire times are whole seconds, returned in UTC."""

    def __init__(self, expression: str, time_zone: str = "UTC", stored: bool = False) -> None:
        """`stored`: an expression a schedule already holds, read with the grammar it was taken
        under (steps were not bounded before), so that it keeps firing as it did."""
        grammar = _STORED_GRAMMAR if stored else _GRAMMAR
        if not isinstance(expression, str) or len(expression) > MAX_LENGTH or not grammar.fullmatch(expression):
            raise CronError(f"not a cron expression: {_fault(expression) if isinstance(expression, str) else _LAYOUT}")
        self.expression = expression
        self.time_zone = time_zone
        self.zone: tzinfo = zone(time_zone)
        # Always six fields for cronsim: with five it applies its own daylight-saving rules, which
        # would be applied twice here.
        self._six = expression if len(expression.split()) == 6 else f"0 {expression}"
        try:
            parsed = CronSim(self._six, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise UnsatisfiableCron(f"no time matches `{expression}`: {str(exc).lower()} (a range runs "
                                    "backwards, or those days never come)") from None  # fmt: skip
        self.every_hour = set(parsed.hours) == set(range(24))
        try:
            self.next_after(datetime(2000, 1, 1, tzinfo=UTC))
        except StopIteration:
            raise UnsatisfiableCron(f"`{expression}` never fires (no matching time in 50 years)") from None

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, {self.time_zone!r})"

    # --- public ---

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (an aware datetime), in UTC."""
        moment = moment.astimezone(UTC)
        if self.every_hour:
            return self._next_real_time(moment)
        return self._next_wall_clock(moment)

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        out: list[datetime] = []
        while len(out) < count:
            after = self.next_after(after)
            out.append(after)
        return out

    def count_between(self, start: datetime, end: datetime, cap: int) -> tuple[int, datetime]:
        """How many fire times lie in (start, end], counting at most `cap`, and the last of those
        counted (`start` if none)."""
        n, last = 0, start
        while n < cap:
            at = self.next_after(last)
            if at > end:
                break
            n, last = n + 1, at
        return n, last

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    # --- the two kinds of schedules ---

    def _readings(self, after: datetime) -> Iterator[datetime]:
        """Wall-clock readings that match, strictly after the naive `after`, without regard to
        the zone (a calendar walk: cronsim on naive datetimes)."""
        return iter(CronSim(self._six, after))

    def _next_wall_clock(self, moment: datetime) -> datetime:
        """Each matching reading fires once: at its first instant, or at the jump if the clock
        skips it. Readings are walked from the moment's own reading (one repeated in autumn may
        map before the moment: it is passed over)."""
        start = _reading(moment.astimezone(self.zone))
        for reading in self._readings(start - SECOND):
            instants = self._instants(reading)
            at = instants[0] if instants else self._jump(reading)
            if at > moment:
                return at
        raise StopIteration  # cronsim gives up after 50 years without a match

    def _next_real_time(self, moment: datetime) -> datetime:
        """Every instant whose reading matches: the earliest such instant after the moment, among
        the readings from the moment's own onwards and, in the first pass of a repeated hour, the
        second pass of that hour's earliest matching reading."""
        local = moment.astimezone(self.zone)
        start = _reading(local)
        candidates = []
        if local.fold == 0 and len(self._instants(start)) == 2:
            first_pass_end = self._transition(moment, moment + (local.utcoffset() - _offset_after(local)))
            repeat_start = _reading(first_pass_end.astimezone(self.zone))  # the second pass starts here
            earliest = next(self._readings(repeat_start - SECOND))
            again = self._instants(earliest)
            if len(again) == 2:
                candidates.append(again[1])
        for reading in self._readings(start - SECOND):
            instants = self._instants(reading)
            later = [at for at in instants if at > moment]
            candidates += later[:1]
            # Done at the first reading wholly after the moment; in the second pass of a repeated
            # hour, at the first instant after it (every reading left in that hour had its first
            # pass before the moment, and later readings come after their second passes).
            if instants and (instants[0] > moment or (later and local.fold == 1)):
                return min(candidates)
        raise StopIteration

    # --- the zone ---

    def _instants(self, reading: datetime) -> tuple[datetime, ...]:
        """The UTC instants at which the zone's clock shows `reading` (naive): none (skipped by a
        change), one, or two (repeated), in order."""
        found = {reading.replace(tzinfo=self.zone, fold=fold).astimezone(UTC) for fold in (0, 1)}
        return tuple(sorted(at for at in found if _reading(at.astimezone(self.zone)) == reading))

    def _jump(self, reading: datetime) -> datetime:
        """The instant the clock jumped over `reading` (naive, in a gap)."""
        a, b = (reading.replace(tzinfo=self.zone, fold=fold).astimezone(UTC) for fold in (0, 1))
        return self._transition(min(a, b), max(a, b))

    def _transition(self, before: datetime, after: datetime) -> datetime:
        """The first whole second in (before, after] with the offset `after` has, the two moments
        being on either side of one change of offset."""
        target = after.astimezone(self.zone).utcoffset()
        lo, hi = before.replace(microsecond=0), after.replace(microsecond=0)
        while hi - lo > SECOND:
            mid = lo + (hi - lo) // 2
            mid = mid.replace(microsecond=0)
            if mid.astimezone(self.zone).utcoffset() == target:
                hi = mid
            else:
                lo = mid
        return hi


def _reading(local: datetime) -> datetime:
    """What a clock shows (naive, whole seconds)."""
    return local.replace(tzinfo=None, fold=0, microsecond=0)


def _offset_after(local: datetime) -> timedelta:
    """The offset of the second pass of a repeated reading."""
    offset = local.replace(fold=1).utcoffset()
    assert offset is not None
    return offset
