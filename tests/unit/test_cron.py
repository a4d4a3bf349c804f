"""When schedules fire (shared/schedules/cron.py): 5- and 6-field expressions, the next five,
daylight-saving changes in Europe/Berlin and America/New_York (and odder zones), and what is refused.
No storage: pure time computation, checked against a brute-force walk where the rule allows one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.schedules.cron import GRAMMAR, MAX_LENGTH, Cron, CronError, UnknownZone, UnsatisfiableCron, time_zones

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def local_times(cron: Cron, after: str, count: int) -> list[str]:
    return [cron.local(t).isoformat() for t in cron.upcoming(at(after), count)]


# --- the basics ----------------------------------------------------------------------------------


def test_five_fields_fire_on_the_minute_in_utc_by_default():
    cron = Cron("*/15 9-10 * * MON-FRI")
    assert [t.isoformat() for t in cron.upcoming(at("2026-06-05T10:20:00+00:00"), 5)] == [
        "2026-06-05T10:30:00+00:00",  # a Friday
        "2026-06-05T10:45:00+00:00",
        "2026-06-08T09:00:00+00:00",  # the weekend is skipped
        "2026-06-08T09:15:00+00:00",
        "2026-06-08T09:30:00+00:00",
    ]


def test_six_fields_put_the_seconds_first_as_ncrontab_does():
    cron = Cron("*/2 * * * * *")
    assert [t.isoformat() for t in cron.upcoming(at("2026-06-05T10:20:59.500+00:00"), 3)] == [
        "2026-06-05T10:21:00+00:00",
        "2026-06-05T10:21:02+00:00",
        "2026-06-05T10:21:04+00:00",
    ]
    assert Cron("15 30 2 * * *").next_after(at("2026-06-05T00:00:00+00:00")) == at("2026-06-05T02:30:15+00:00")


def test_next_after_is_strictly_after_a_fire_time():
    cron = Cron("0 * * * *")
    assert cron.next_after(at("2026-06-05T10:00:00+00:00")) == at("2026-06-05T11:00:00+00:00")


def test_fire_times_are_read_in_the_schedules_zone():
    cron = Cron("0 9 * * *", "Asia/Tokyo")
    assert local_times(cron, "2026-06-05T00:00:00+00:00", 2) == ["2026-06-06T09:00:00+09:00",
                                                                  "2026-06-07T09:00:00+09:00"]  # fmt: skip
    assert cron.next_after(at("2026-06-05T00:00:00+00:00")) == at("2026-06-06T00:00:00+00:00")


def test_names_last_days_and_nth_weekdays():
    assert local_times(Cron("0 0 L * *"), "2026-02-01T00:00:00+00:00", 2) == [
        "2026-02-28T00:00:00+00:00", "2026-03-31T00:00:00+00:00"]  # fmt: skip
    assert local_times(Cron("0 9 * jan,Feb MON#1"), "2026-01-01T00:00:00+00:00", 2) == [
        "2026-01-05T09:00:00+00:00", "2026-02-02T09:00:00+00:00"]  # fmt: skip
    assert local_times(Cron("0 9 * * 5L"), "2026-01-01T00:00:00+00:00", 1) == ["2026-01-30T09:00:00+00:00"]


def test_both_day_fields_restricted_fire_on_either_as_unix_cron_does():
    """NCRONTAB would need both; documented in the README."""
    fires = local_times(Cron("0 9 13 * FRI"), "2026-02-01T00:00:00+00:00", 4)
    assert fires == ["2026-02-06T09:00:00+00:00", "2026-02-13T09:00:00+00:00",  # Friday, and the 13th (a Friday)
                     "2026-02-20T09:00:00+00:00", "2026-02-27T09:00:00+00:00"]  # fmt: skip


def test_count_between_counts_fire_times_in_a_half_open_interval_up_to_a_cap():
    cron = Cron("0 * * * *")
    start = at("2026-06-05T10:00:00+00:00")
    assert cron.count_between(start, start + timedelta(hours=5), cap=100) == (5, start + timedelta(hours=5))  # 11-15
    assert cron.count_between(start, start + timedelta(hours=5), cap=3) == (3, start + timedelta(hours=3))
    assert cron.count_between(start, start + timedelta(minutes=59), cap=100) == (0, start)


# --- daylight saving: times of day fire once a day -----------------------------------------------


@pytest.mark.parametrize("expression", ["30 2 * * *", "0 30 2 * * *"])
def test_berlin_spring_forward_a_time_in_the_gap_fires_once_when_the_clock_jumps(expression):
    fires = local_times(Cron(expression, BERLIN), "2026-03-28T00:00:00+01:00", 3)
    assert fires == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist on the last Sunday of March: at the jump
        "2026-03-30T02:30:00+02:00",
    ]


@pytest.mark.parametrize("expression", ["30 2 * * *", "0 30 2 * * *"])
def test_berlin_fall_back_a_time_in_the_repeated_hour_fires_once_at_its_first_pass(expression):
    fires = local_times(Cron(expression, BERLIN), "2026-10-24T00:00:00+02:00", 3)
    assert fires == ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


@pytest.mark.parametrize("expression", ["30 2 * * *", "0 30 2 * * *"])
def test_new_york_spring_forward_and_fall_back(expression):
    cron = Cron(expression, NEW_YORK)
    assert local_times(cron, "2026-03-07T00:00:00-05:00", 3) == [
        "2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]  # fmt: skip
    # 02:30 is not repeated in New York (01:00-02:00 is): nothing special in November.
    assert local_times(cron, "2026-10-31T00:00:00-04:00", 3) == [
        "2026-10-31T02:30:00-04:00", "2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"]  # fmt: skip


def test_new_york_fall_back_a_time_in_the_repeated_hour_fires_once():
    fires = local_times(Cron("30 1 * * *", NEW_YORK), "2026-10-31T00:00:00-04:00", 3)
    assert fires == ["2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_several_times_in_the_gap_make_one_fire_at_the_jump():
    fires = local_times(Cron("0,20,40 2 * * *", BERLIN), "2026-03-29T00:00:00+01:00", 2)
    assert fires == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]


def test_a_daily_schedule_fires_once_on_every_day_of_a_year_with_two_changes():
    for zone in (BERLIN, NEW_YORK):
        cron = Cron("0 30 2 * * *", zone)  # six fields: cronsim alone would skip and double here
        fires = cron.upcoming(at("2026-01-01T00:00:00+00:00"), 365)
        days = [cron.local(t).date() for t in fires]
        assert len(set(days)) == 365 and days == sorted(days), zone
        assert all(b > a for a, b in zip(fires, fires[1:], strict=False))


# --- daylight saving: schedules of every hour follow real time ------------------------------------


def test_every_20_minutes_fires_in_both_passes_of_the_repeated_hour_and_stays_20_minutes_apart():
    cron = Cron("*/20 * * * *", BERLIN)
    fires = cron.upcoming(at("2026-10-25T01:30:00+02:00"), 8)
    assert [cron.local(t).isoformat() for t in fires] == [
        "2026-10-25T01:40:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:20:00+02:00",
        "2026-10-25T02:40:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T02:20:00+01:00",
        "2026-10-25T02:40:00+01:00", "2026-10-25T03:00:00+01:00",
    ]  # fmt: skip
    assert {b - a for a, b in zip(fires, fires[1:], strict=False)} == {timedelta(minutes=20)}


def test_every_20_minutes_loses_no_real_time_when_the_clock_jumps_forward():
    fires = Cron("*/20 * * * *", BERLIN).upcoming(at("2026-03-29T01:30:00+01:00"), 6)
    assert {b - a for a, b in zip(fires, fires[1:], strict=False)} == {timedelta(minutes=20)}


def test_hourly_fires_every_real_hour_across_both_changes():
    cron = Cron("30 * * * *", NEW_YORK)
    for start in ("2026-03-08T00:00:00-05:00", "2026-11-01T00:00:00-04:00"):
        fires = cron.upcoming(at(start), 6)
        assert {b - a for a, b in zip(fires, fires[1:], strict=False)} == {timedelta(hours=1)}, start


# Zones with odd changes: half-hour shifts (Lord Howe), changes at midnight (Santiago), two hours
# (Troll), a whole day skipped (Apia, December 2011).
ODD = [
    ("Europe/Berlin", "2026-03-29T01:00:00+00:00"),
    ("Europe/Berlin", "2026-10-25T01:00:00+00:00"),
    ("America/New_York", "2026-03-08T07:00:00+00:00"),
    ("America/New_York", "2026-11-01T06:00:00+00:00"),
    ("America/Santiago", "2026-09-06T04:00:00+00:00"),
    ("America/Santiago", "2026-04-05T03:00:00+00:00"),
    ("Australia/Lord_Howe", "2026-04-04T15:00:00+00:00"),
    ("Australia/Lord_Howe", "2026-10-03T15:30:00+00:00"),
    ("Antarctica/Troll", "2026-03-29T01:00:00+00:00"),
    ("Antarctica/Troll", "2026-10-25T01:00:00+00:00"),
    ("Pacific/Apia", "2011-12-30T10:00:00+00:00"),
]
EVERY_HOUR = ["*/10 * * * *", "0 * * * *", "30 * * * *", "15,45 * * * *", "40 */1 * * *", "20 0-23 * * *",
              "*/20 * * * * *"]  # fmt: skip
TIMES_OF_DAY = ["30 2 * * *", "0 0 * * *", "*/15 1-3 * * *", "0 30 1,2,3 * * *", "0 0,12 * * *", "*/20 0 0 * * *"]


def _matching_readings(expression: str, start: datetime, end: datetime) -> list[datetime]:
    six = expression if len(expression.split()) == 6 else f"0 {expression}"
    out, it = [], iter(CronSim(six, start))
    while (reading := next(it)) <= end:
        out.append(reading)
    return out


@pytest.mark.parametrize(("zone", "change"), ODD)
@pytest.mark.parametrize("expression", EVERY_HOUR)
def test_every_hour_schedules_fire_at_every_instant_whose_reading_matches(zone, change, expression):
    """Brute force: walk real time in steps and keep the instants whose local reading matches."""
    tz, center = ZoneInfo(zone), at(change)
    start, end = center - timedelta(hours=4), center + timedelta(hours=4)
    step = timedelta(seconds=20 if len(expression.split()) == 6 else 60)
    readings = set(_matching_readings(expression, (start - timedelta(days=2)).replace(tzinfo=None),
                                      (end + timedelta(days=2)).replace(tzinfo=None)))  # fmt: skip
    expected, t = [], start
    while t <= end:
        if t.astimezone(tz).replace(tzinfo=None, fold=0) in readings:
            expected.append(t)
        t += step
    cron = Cron(expression, zone)
    got, t = [], start - SECOND_EPS
    while (t := cron.next_after(t)) <= end:
        got.append(t)
    assert got == expected


SECOND_EPS = timedelta(microseconds=1)


@pytest.mark.parametrize(("zone", "change"), ODD)
@pytest.mark.parametrize("expression", TIMES_OF_DAY)
def test_times_of_day_fire_once_per_reading_at_its_first_instant_or_at_the_jump(zone, change, expression):
    """The rule, written out independently: each matching reading once; a repeated one at its
    first instant; a skipped one at the first instant after it; equal instants once."""
    tz, center = ZoneInfo(zone), at(change)
    start, end = center - timedelta(hours=30), center + timedelta(hours=30)
    expected: list[datetime] = []
    for reading in _matching_readings(expression, (start - timedelta(days=2)).replace(tzinfo=None),
                                      (end + timedelta(days=2)).replace(tzinfo=None)):  # fmt: skip
        first = reading.replace(tzinfo=tz, fold=0).astimezone(UTC)
        second = reading.replace(tzinfo=tz, fold=1).astimezone(UTC)
        real = sorted(i for i in {first, second} if i.astimezone(tz).replace(tzinfo=None, fold=0) == reading)
        if real:
            instant = real[0]
        else:  # skipped: the first whole minute whose reading is past it
            instant = min(first, second).replace(second=0)
            while instant.astimezone(tz).replace(tzinfo=None) < reading:
                instant += timedelta(minutes=1)
        if start < instant <= end and instant not in expected:
            expected.append(instant)
    cron = Cron(expression, zone)
    got, t = [], start
    while (t := cron.next_after(t)) <= end:
        got.append(t)
    assert got == sorted(expected)


# --- what is refused ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "* * * * * * *",
        "@daily",
        "R * * * *",
        "H * * * *",
        "0 0 ? * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "*/90 * * * * *",  # would match only second 0
        "*/60 * * * *",
        "0 */24 * * *",
        "0 0 */31 * *",  # only day 1
        "0 0 1 */12 *",  # only January
        "0 0 * * */7",  # only Sunday
        "0 0-10/60 * * *",
        "* * * * MONDAY",
        "0  0 * * *",
        " 0 0 * * *",
        "0 0 * * *\n",
        "1,,2 * * * *",
        "1- * * * *",
        "* * L * L",
        "0 0 * * 1#6",
        "MON * * * *",
        "* * * JAN-MON *",
        "x" * 300,
    ],  # fmt: skip
)
def test_expressions_outside_the_grammar_are_refused(expression):
    with pytest.raises(CronError):
        Cron(expression)


@pytest.mark.parametrize(
    ("expression", "said"),
    [
        ("61 * * * *", "its minute field `61` is not valid: it takes `*`, 0-59,"),
        ("0 0 * * MON#6", "its day-of-week field `MON#6` is not valid"),
        ("60 0 0 * * *", "its second field `60`"),
        (
            "*/90 * * * * *",
            "its second field `*/90` is not valid: it takes `*`, 0-59, ranges `a-b`, steps `*/n` (n from 1 to 59)",
        ),
        ("0 */24 * * *", "steps `*/n` (n from 1 to 23)"),
        ("0 9 32 * *", "its day-of-month field `32`"),
        ("* * * *", "give 5 fields"),
        ("*  * * * *", "give 5 fields"),
        ("x" * 300, "over 200 characters"),
    ],
)
def test_a_refused_expression_is_told_which_of_its_fields_is_wrong(expression, said):
    with pytest.raises(CronError, match="^not a cron expression: ") as refused:
        Cron(expression)
    assert said in str(refused.value)


@pytest.mark.parametrize("expression", ["5-2 * * * *", "0 22-2 * * *", "0 0 30 2 *", "0 0 31 4,6 *", "0 0 * * FRI-MON"])
def test_well_formed_expressions_that_match_no_time_are_unsatisfiable(expression):
    with pytest.raises(UnsatisfiableCron):
        Cron(expression)


@settings(max_examples=400, deadline=None, database=None)
@given(st.from_regex(GRAMMAR, fullmatch=True).filter(lambda e: len(e) <= MAX_LENGTH))
def test_every_expression_of_the_published_grammar_is_accepted_or_unsatisfiable(expression):
    """The OpenAPI document publishes GRAMMAR as the pattern: whatever matches it gets a schedule
    or a 422, never a 400 and never a crash (what the contract fuzzer checks over HTTP)."""
    try:
        cron = Cron(expression, BERLIN)
    except UnsatisfiableCron:
        return
    fires = cron.upcoming(at("2026-10-24T12:00:00+00:00"), 3)
    assert fires == sorted(set(fires))


def test_unknown_zones_are_refused_with_a_suggestion_when_only_the_case_is_wrong():
    with pytest.raises(UnknownZone, match="did you mean Europe/Berlin"):
        Cron("* * * * *", "europe/berlin")
    for name in ("Mars/Olympus_Mons", "localtime", "Factory", "../etc/passwd", "/etc/localtime", "", "UTC "):
        with pytest.raises(UnknownZone):
            Cron("* * * * *", name)


def test_the_zone_list_holds_the_iana_names_people_use():
    zones = time_zones()
    assert {"UTC", BERLIN, NEW_YORK, "Asia/Kolkata", "Australia/Lord_Howe"} <= set(zones)
    assert "localtime" not in zones and list(zones) == sorted(zones)


@pytest.mark.parametrize(
    "expression", ["*/59 * * * * *", "0 */23 * * *", "0 0 */30 * *", "0 0 1 */11 *", "0 0 * * */6"]
)
def test_a_step_below_its_fields_span_is_taken(expression):
    assert Cron(expression).upcoming(at("2026-10-24T12:00:00+00:00"), 2)


def test_an_expression_stored_before_steps_were_bounded_is_read_as_it_fired():
    fires = Cron("*/90 * * * * *", stored=True).upcoming(at("2026-10-24T12:00:30+00:00"), 2)
    assert fires == [at("2026-10-24T12:01:00+00:00"), at("2026-10-24T12:02:00+00:00")]
