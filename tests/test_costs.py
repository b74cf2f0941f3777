"""routing.costs: cost tables parsed, checked, looked up, priced and round-tripped."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import routing.costs as costs
from routing.costs import (
    HEADER,
    CostTable,
    CostTableError,
    Tariff,
    parse_csv,
    parse_days,
    table_from_json,
    table_to_json,
    to_csv,
)

HEADER_LINE = ",".join(HEADER)
PARIS_TZ = ZoneInfo("Europe/Paris")

PARIS_CSV = f"""{HEADER_LINE}
33,0.12,0.05,60,60,EUR,mon-fri,08:00,18:00,France day
33,0.06,0.05,60,60,EUR,mon-fri,00:00,08:00,France night
33,0.06,0.05,60,60,EUR,mon-fri,18:00,24:00,France evening
33,0.05,0.05,60,60,EUR,"sat,sun",,,France weekend
331,0.10,0,60,60,EUR,*,,,Paris
3314,0.08,0,30,6,EUR,mon-fri,08:00,18:00,"Paris centre, office hours only"
44,0.20,0.10,1,1,EUR,mon-sun,,,UK
"""


def paris() -> CostTable:
    return parse_csv(PARIS_CSV, site="paris", timezone="Europe/Paris")


def table(*rows: str, timezone: str = "Europe/Paris") -> CostTable:
    return parse_csv("\n".join([HEADER_LINE, *rows]) + "\n", site="paris", timezone=timezone)


def errors_of(
    text: str, timezone: str = "Europe/Paris", site: str = "paris", version: int = 1
) -> list[str]:
    """The errors a refused file gets (and that it is refused)."""
    with pytest.raises(CostTableError) as info:
        parse_csv(text, site=site, timezone=timezone, version=version)
    return info.value.errors


def found(t: CostTable, number: str, at: datetime) -> Tariff:
    """The tariff a lookup must find."""
    tariff = t.lookup(number, at)
    assert tariff is not None, f"no tariff for {number} at {at}"
    return tariff


def paris_time(*args: int) -> datetime:
    """A Paris wall-clock time, given to lookups in UTC (as a service would)."""
    return datetime(*args, tzinfo=PARIS_TZ).astimezone(UTC)


# Reference dates: Wednesday 14 January 2026 (CET, UTC+1), Wednesday 15 July 2026
# (CEST, UTC+2), Saturday 17 January 2026.
WINTER_WEEKDAY = (2026, 1, 14)
SUMMER_WEEKDAY = (2026, 7, 15)
SATURDAY = (2026, 1, 17)


# --------------------------------------------------------------------------- parsing


def test_parse_a_good_file() -> None:
    t = paris()
    assert (t.site, t.timezone, t.currency, t.version) == ("paris", "Europe/Paris", "EUR", 1)
    assert len(t.tariffs) == 7
    day = t.tariffs[0]
    assert day == Tariff(
        prefix="33",
        price_per_minute=Decimal("0.12"),
        connection_fee=Decimal("0.05"),
        first_increment=60,
        next_increment=60,
        currency="EUR",
        days=frozenset({0, 1, 2, 3, 4}),
        start=8 * 60,
        end=18 * 60,
        description="France day",
    )
    assert isinstance(day.price_per_minute, Decimal)
    assert (day.band, day.days_text) == ("08:00-18:00", "mon-fri")
    assert t.tariffs[3].days == frozenset({5, 6})
    assert (t.tariffs[4].start, t.tariffs[4].end) == (0, 1440)
    assert t.tariffs[5].description == "Paris centre, office hours only"
    assert t.tariffs[6].days == frozenset(range(7))


def test_version_is_kept() -> None:
    assert parse_csv(PARIS_CSV, site="paris", timezone="Europe/Paris", version=7).version == 7


def test_lenient_about_layout_strict_about_values() -> None:
    text = (
        "\ufeff"
        + HEADER_LINE
        + "\r\n"
        + " 33 , 0.12 ,0.05, 60,60 , EUR , Mon-Fri , 8:00 , 18:00 ,  day  \r\n"
        + "\r\n"
        + '33,0.06,0.05,60,60,EUR,"SAT, sun",,,\r\n'
        + "   \r\n"
    )
    t = parse_csv(text, site="paris", timezone="Europe/Paris")
    assert [x.days for x in t.tariffs] == [frozenset(range(5)), frozenset({5, 6})]
    assert t.tariffs[0].start == 480
    assert t.tariffs[0].description == "day"


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("*", set(range(7))),
        ("mon-sun", set(range(7))),
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("sat,sun", {5, 6}),
        ("MON,wed-fri", {0, 2, 3, 4}),
        ("sun", {6}),
        ("fri-sun,mon", {4, 5, 6, 0}),
        (" tue - thu ", {1, 2, 3}),
    ],
)
def test_parse_days(text: str, days: set[int]) -> None:
    assert parse_days(text) == days


def test_all_day_can_be_written_empty_or_as_00_00_to_24_00() -> None:
    a = table("1,0.1,0,60,60,USD,*,,,")
    b = table("1,0.1,0,60,60,USD,mon-sun,00:00,24:00,")
    assert a == b


# --------------------------------------------------------------------------- errors

GOOD = "33,0.12,0.05,60,60,EUR,mon-fri,08:00,18:00,day"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('44,"1,2",0,60,60,EUR,*,,,', "price_per_minute '1,2' is not a decimal"),
        ("+44,0.1,0,60,60,EUR,*,,,", "prefix '+44' must be written without '+'"),
        ("44a,0.1,0,60,60,EUR,*,,,", "prefix '44a' must be 1 to 15 digits, or *"),
        ("1234567890123456,0.1,0,60,60,EUR,*,,,", "must be 1 to 15 digits"),
        (",0.1,0,60,60,EUR,*,,,", "prefix '' must be 1 to 15 digits"),
        ("044,0.1,0,60,60,EUR,*,,,", "prefix '044' cannot start with 0"),
        ("44,-0.1,0,60,60,EUR,*,,,", "price_per_minute '-0.1' must be >= 0"),
        ("44,0.1234567,0,60,60,EUR,*,,,", "price_per_minute '0.1234567' has more than 6"),
        ("44,1e3,0,60,60,EUR,*,,,", "price_per_minute '1e3' is not a decimal"),
        ("44,,0,60,60,EUR,*,,,", "price_per_minute '' is not a decimal"),
        ("44,0.1,abc,60,60,EUR,*,,,", "connection_fee 'abc' is not a decimal"),
        ("44,0.1,0,0,60,EUR,*,,,", "first_increment '0' is not a whole number of seconds"),
        ("44,0.1,0,60,1.5,EUR,*,,,", "next_increment '1.5' is not a whole number of seconds"),
        ("44,0.1,0,60,,EUR,*,,,", "next_increment '' is not a whole number"),
        ("44,0.1,0,60,60,eur,*,,,", "currency 'eur' is not an ISO 4217 code"),
        ("44,0.1,0,60,60,EURO,*,,,", "currency 'EURO' is not an ISO 4217 code"),
        ("44,0.1,0,60,60,EUR,mon-fry,,,", "days 'mon-fry': 'fry' is not a day"),
        ("44,0.1,0,60,60,EUR,weekdays,,,", "'weekdays' is not a day"),
        ("44,0.1,0,60,60,EUR,fri-mon,,,", "range 'fri-mon' runs backwards (write 'fri-sun,mon')"),
        ("44,0.1,0,60,60,EUR,,,,", "days is empty"),
        ("44,0.1,0,60,60,EUR,*,25:00,26:00,", "start '25:00' is not a time"),
        ("44,0.1,0,60,60,EUR,*,8h00,18:00,", "start '8h00' is not a time"),
        ("44,0.1,0,60,60,EUR,*,08:00,24:01,", "end '24:01' is not a time"),
        ("44,0.1,0,60,60,EUR,*,24:00,24:00,", "band 24:00-24:00: start must be before end"),
        ("44,0.1,0,60,60,EUR,*,22:00,06:00,", "crosses midnight as two rows"),
        ("44,0.1,0,60,60,EUR,*,08:00,08:00,", "start must be before end"),
        ("44,0.1,0,60,60,EUR,*,,18:00,", "start and end must both be given"),
        ('44,0.1,0,60,60,EUR,*,,,"two\nlines"', "description contains a control character"),
        ("44,0.1,0,60,60,EUR,*,,", "expected 10 columns, got 9"),
        (
            "44,0.1,0,60,60,EUR,sat,sun,,,",
            'got 11 (quote a field that contains commas, e.g. "sat,sun")',
        ),
    ],
)
def test_each_bad_value_is_reported_with_its_line(row: str, message: str) -> None:
    errors = errors_of(f"{HEADER_LINE}\n{GOOD}\n{row}\n")
    assert len(errors) == 1, errors
    assert errors[0].startswith("line 3: ")
    assert message in errors[0]


def test_the_message_quotes_the_bad_value() -> None:
    errors = errors_of(
        f'{HEADER_LINE}\n{GOOD}\n{GOOD}\n{GOOD}\n{GOOD}\n{GOOD}\n44,"1,2",0,1,1,EUR,*,,,\n'
    )
    assert "line 7: price_per_minute '1,2' is not a decimal (write e.g. 0.12)" in errors


def test_wrong_header() -> None:
    swapped = HEADER_LINE.replace(
        "price_per_minute,connection_fee", "connection_fee,price_per_minute"
    )
    assert errors_of(f"{swapped}\n{GOOD}\n") == [
        f"line 1: wrong header {swapped!r}; the first line must be exactly {HEADER_LINE!r}"
    ]
    assert errors_of(f"{HEADER_LINE.upper()}\n{GOOD}\n")[0].startswith("line 1: wrong header")
    assert errors_of(f"{HEADER_LINE},notes\n{GOOD}\n")[0].startswith("line 1: wrong header")


def test_missing_header_and_the_first_line_is_still_checked() -> None:
    assert errors_of(f"{GOOD}\n") == [
        f"line 1: missing header; the first line must be exactly {HEADER_LINE!r}"
    ]
    errors = errors_of("33,x,0.05,60,60,EUR,mon-fri,08:00,18:00,\n")
    assert errors[0].startswith("line 1: missing header")
    assert errors[1] == "line 1: price_per_minute 'x' is not a decimal (write e.g. 0.12)"


def test_empty_file_and_empty_table() -> None:
    assert errors_of("") == [
        f"line 1: missing header; the first line must be exactly {HEADER_LINE!r}",
        "the table has no rows",
    ]
    assert errors_of(f"{HEADER_LINE}\n") == ["the table has no rows"]
    assert errors_of(f"{HEADER_LINE}\n\n\n") == ["the table has no rows"]


def test_duplicate_rows() -> None:
    errors = errors_of(
        f"{HEADER_LINE}\n"
        "33,0.12,0,60,60,EUR,mon-fri,08:00,18:00,\n"
        "1,0.12,0,60,60,EUR,*,,,\n"
        "33,0.20,0,60,60,EUR,Mon-Fri,08:00,18:00,other price\n"
        "1,0.12,0,60,60,EUR,mon-sun,00:00,24:00,\n"
    )
    assert errors == [
        "line 4: duplicate of line 2 (prefix 33, days mon-fri, 08:00-18:00)",
        "line 5: duplicate of line 3 (prefix 1, days mon-sun, 00:00-24:00)",
    ]


def test_overlapping_bands_for_the_same_prefix_and_day() -> None:
    errors = errors_of(
        f"{HEADER_LINE}\n"
        "33,0.12,0,60,60,EUR,mon-fri,08:00,18:00,\n"
        "33,0.06,0,60,60,EUR,fri-sun,17:00,20:00,\n"
        "33,0.06,0,60,60,EUR,mon-fri,18:00,24:00,\n"  # adjacent: fine
        "331,0.06,0,60,60,EUR,mon-fri,07:00,19:00,\n"  # another prefix: fine
        "*,1,0,60,60,EUR,*,,,\n"
        "*,1,0,60,60,EUR,sun,12:00,13:00,\n"
    )
    assert errors == [
        "line 3: prefix 33 band 17:00-20:00 on fri overlaps line 2 (08:00-18:00)",
        "line 4: prefix 33 band 18:00-24:00 on fri overlaps line 3 (17:00-20:00)",
        "line 7: prefix * band 12:00-13:00 on sun overlaps line 6 (00:00-24:00)",
    ]


def test_overlap_is_reported_once_per_pair_with_every_day() -> None:
    errors = errors_of(
        f'{HEADER_LINE}\n33,0.12,0,60,60,EUR,*,,,\n33,0.06,0,60,60,EUR,"mon,wed-fri",17:00,20:00,\n'
    )
    assert errors == [
        "line 3: prefix 33 band 17:00-20:00 on mon,wed-fri overlaps line 2 (00:00-24:00)"
    ]


def test_mixed_currencies() -> None:
    errors = errors_of(
        f"{HEADER_LINE}\n"
        "33,0.12,0,60,60,EUR,*,,,\n"
        "1,0.12,0,60,60,USD,*,,,\n"
        "44,bad,0,60,60,GBP,*,,,\n"
    )
    assert errors == [
        "line 3: currency USD differs from that of line 2 (EUR); a table uses one currency",
        "line 4: price_per_minute 'bad' is not a decimal (write e.g. 0.12)",
        "line 4: currency GBP differs from that of line 2 (EUR); a table uses one currency",
    ]


@pytest.mark.parametrize("zone", ["Europe/Pariss", "", "CET+1", "../etc/passwd", "Paris"])
def test_unknown_timezone(zone: str) -> None:
    errors = errors_of(f"{HEADER_LINE}\n{GOOD}\n", timezone=zone)
    assert errors == [f"timezone {zone!r} is not a known IANA time zone (e.g. Europe/Paris)"]


def test_bad_site_and_version() -> None:
    assert errors_of(f"{HEADER_LINE}\n{GOOD}\n", site=" ", version=0) == [
        "site ' ' must be a non-empty name",
        "version 0 must be an integer >= 1",
    ]


def test_too_many_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(costs, "MAX_ROWS", 3)
    rows = [f"{33 + i},0.1,0,60,60,EUR,*,,," for i in range(5)]
    assert errors_of("\n".join([HEADER_LINE, *rows])) == [
        "line 5: the table has 5 rows, more than the limit of 3"
    ]


def test_the_row_limit_is_100_000() -> None:
    rows = "".join(f"{100_000 + i},0.1,0,60,60,EUR,*,,,\n" for i in range(100_001))
    assert errors_of(f"{HEADER_LINE}\n{rows}") == [
        "line 100002: the table has 100,001 rows, more than the limit of 100,000"
    ]


def test_all_errors_of_a_file_are_collected_in_line_order() -> None:
    text = (
        "prefix,price,connection_fee,first_increment,next_increment,currency,days,start,end,description\n"
        "33,0.12,0.05,60,60,EUR,mon-fri,08:00,18:00,day\n"
        "33,0.12,0.05,60,60,EUR,mon-fri,08:00,18:00,again\n"
        "x,1;2,0.05,0,60,EUR,mon-fri,18:00,08:00,\n"
        "44,0.2,0,60,60,GBP,*,,,\n"
        "1,0.2\n"
        "33,0.2,0,60,60,EUR,fri,12:00,13:00,\n"
    )
    errors = errors_of(text, timezone="Mars/Olympus")
    assert errors == [
        "timezone 'Mars/Olympus' is not a known IANA time zone (e.g. Europe/Paris)",
        "line 1: wrong header 'prefix,price,connection_fee,first_increment,next_increment,"
        f"currency,days,start,end,description'; the first line must be exactly {HEADER_LINE!r}",
        "line 3: duplicate of line 2 (prefix 33, days mon-fri, 08:00-18:00)",
        "line 4: prefix 'x' must be 1 to 15 digits, or * for every number",
        "line 4: price_per_minute '1;2' is not a decimal (write e.g. 0.12)",
        "line 4: first_increment '0' is not a whole number of seconds >= 1",
        "line 4: band 18:00-08:00: start must be before end (write a band that crosses "
        "midnight as two rows, e.g. 22:00-24:00 and 00:00-06:00)",
        "line 5: currency GBP differs from that of line 2 (EUR); a table uses one currency",
        "line 6: expected 10 columns, got 2",
        "line 7: prefix 33 band 12:00-13:00 on fri overlaps line 2 (08:00-18:00)",
    ]


def test_error_is_a_value_error_whose_message_lists_the_errors() -> None:
    with pytest.raises(ValueError, match=r"2 error\(s\):\n  line 3: .*\n  line 4: "):
        parse_csv(
            f"{HEADER_LINE}\n{GOOD}\n44,x,0,60,60,EUR,*,,,\n1,y,0,60,60,EUR,*,,,\n",
            site="paris",
            timezone="UTC",
        )


def test_parse_csv_wants_text() -> None:
    with pytest.raises(TypeError, match="str"):
        parse_csv(PARIS_CSV.encode(), site="paris", timezone="UTC")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lookup


def test_longest_prefix_wins() -> None:
    t = paris()
    at = paris_time(*WINTER_WEEKDAY, 10, 0)
    assert found(t, "+33142685300", at).prefix == "3314"
    assert found(t, "+33158000000", at).prefix == "331"
    assert found(t, "+33491000000", at).prefix == "33"
    assert found(t, "+442079460000", at).prefix == "44"


def test_no_match_means_the_site_cannot_dial_it() -> None:
    t = paris()
    at = paris_time(*WINTER_WEEKDAY, 10, 0)
    assert t.lookup("+81312345678", at) is None
    assert t.call_cost("+81312345678", at, 60) is None
    assert not t.can_dial("+81312345678")
    assert t.can_dial("+33142685300")
    assert t.can_dial("+442079460000")


@pytest.mark.parametrize(
    ("date", "utc_hour", "utc_minute", "description"),
    [
        # January, CET = UTC+1: 16:30 UTC is 17:30 in Paris, 17:30 UTC is 18:30
        (WINTER_WEEKDAY, 16, 30, "France day"),
        (WINTER_WEEKDAY, 17, 30, "France evening"),
        (WINTER_WEEKDAY, 16, 59, "France day"),
        (WINTER_WEEKDAY, 17, 0, "France evening"),  # 18:00 sharp: the day band is [08:00, 18:00)
        (WINTER_WEEKDAY, 7, 0, "France day"),  # 08:00 Paris
        (WINTER_WEEKDAY, 6, 59, "France night"),
        # July, CEST = UTC+2: 15:30 UTC is 17:30 in Paris, 16:30 UTC is 18:30
        (SUMMER_WEEKDAY, 15, 30, "France day"),
        (SUMMER_WEEKDAY, 16, 30, "France evening"),
        (SUMMER_WEEKDAY, 6, 0, "France day"),  # 08:00 Paris
        (SUMMER_WEEKDAY, 5, 59, "France night"),
        # the weekday too is Paris's: 23:30 UTC on Friday 16 January is Saturday in Paris
        ((2026, 1, 16), 22, 59, "France evening"),
        ((2026, 1, 16), 23, 30, "France weekend"),
        (SATURDAY, 12, 0, "France weekend"),
    ],
)
def test_time_bands_are_in_the_sites_timezone(
    date: tuple[int, int, int], utc_hour: int, utc_minute: int, description: str
) -> None:
    at = datetime(*date, utc_hour, utc_minute, tzinfo=UTC)
    assert found(paris(), "+33491000000", at).description == description


def test_same_utc_time_is_a_different_band_in_summer_and_winter() -> None:
    t = paris()
    winter = datetime(*WINTER_WEEKDAY, 16, 30, tzinfo=UTC)
    summer = datetime(*SUMMER_WEEKDAY, 16, 30, tzinfo=UTC)
    assert found(t, "+33491000000", winter).price_per_minute == Decimal("0.12")
    assert found(t, "+33491000000", summer).price_per_minute == Decimal("0.06")


def test_any_aware_datetime_is_accepted() -> None:
    new_york = ZoneInfo("America/New_York")
    at = datetime(*WINTER_WEEKDAY, 11, 30, tzinfo=new_york)  # 17:30 in Paris
    assert found(paris(), "+33491000000", at).description == "France day"
    at = datetime(*WINTER_WEEKDAY, 12, 30, tzinfo=new_york)  # 18:30 in Paris
    assert found(paris(), "+33491000000", at).description == "France evening"


def test_a_table_in_another_timezone() -> None:
    t = table(
        "1,0.02,0,6,6,USD,mon-fri,09:00,17:00,business",
        '1,0.01,0,6,6,USD,"mon-fri",00:00,09:00,early',
        "1,0.01,0,6,6,USD,mon-fri,17:00,24:00,late",
        '1,0.01,0,6,6,USD,"sat,sun",,,weekend',
        timezone="America/New_York",
    )
    # 13:30 UTC is 08:30 in New York in January (EST) and 09:30 in July (EDT)
    january = datetime(2026, 1, 14, 13, 30, tzinfo=UTC)
    july = datetime(2026, 7, 15, 13, 30, tzinfo=UTC)
    assert found(t, "+12125550100", january).description == "early"
    assert found(t, "+12125550100", july).description == "business"


def test_the_same_table_in_another_timezone_moves_its_bands() -> None:
    """A site that changes its time zone keeps its rows; its bands move with the zone."""
    t = paris()
    moved = t.in_timezone("America/New_York")
    assert (moved.site, moved.currency, moved.version, moved.tariffs) == (
        t.site,
        t.currency,
        t.version,
        t.tariffs,
    )
    assert moved.timezone == "America/New_York" and moved != t
    assert t.in_timezone("Europe/Paris") is t
    assert moved.in_timezone("Europe/Paris") == t
    # 18:30 UTC on Wednesday 14 January: 19:30 in Paris, 13:30 in New York
    at = datetime(*WINTER_WEEKDAY, 18, 30, tzinfo=UTC)
    assert found(t, "+33491000000", at).description == "France evening"
    assert found(moved, "+33491000000", at).description == "France day"
    assert moved.call_cost("+33491000000", at, 60) == Decimal("0.17")
    # the evening band now starts at 18:00 New York time, 23:00 UTC
    after = datetime(*WINTER_WEEKDAY, 18, 30, tzinfo=UTC)
    assert moved.band_starts("+33491000000", after, after + timedelta(hours=5)) == [
        datetime(*WINTER_WEEKDAY, 23, 0, tzinfo=UTC)
    ]
    with pytest.raises(CostTableError, match="not a known IANA time zone"):
        t.in_timezone("Mars/Olympus")


def test_naive_times_and_bad_numbers_are_refused() -> None:
    t = paris()
    with pytest.raises(ValueError, match="timezone-aware"):
        t.lookup("+33142685300", datetime(2026, 1, 14, 10, 0))
    for number in ["33142685300", "+", "+0142685300", "+33 1 42", "+1234567890123456"]:
        with pytest.raises(ValueError, match=r"E\.164"):
            t.lookup(number, paris_time(*WINTER_WEEKDAY, 10, 0))
        with pytest.raises(ValueError, match=r"E\.164"):
            t.can_dial(number)


def test_catch_all_matches_everything_with_the_lowest_precedence() -> None:
    t = table(
        "*,1.50,0.20,60,60,EUR,*,,,anywhere",
        "33,0.10,0,60,60,EUR,*,,,France",
    )
    at = paris_time(*WINTER_WEEKDAY, 10, 0)
    assert found(t, "+33142685300", at).description == "France"
    assert found(t, "+81312345678", at).description == "anywhere"
    assert found(t, "+1", at).description == "anywhere"
    assert t.can_dial("+81312345678")


def test_fallback_to_a_shorter_prefix_when_the_longest_has_no_band_then() -> None:
    t = paris()
    night = paris_time(*WINTER_WEEKDAY, 22, 0)
    # 3314 only has office hours: at night Paris centre falls back to 331 (all day)
    assert found(t, "+33142685300", night).prefix == "331"
    saturday_noon = paris_time(*SATURDAY, 12, 0)
    assert found(t, "+33142685300", saturday_noon).prefix == "331"

    # without 331, it falls back two levels to 33's band in force at that time
    t = table(
        "33,0.12,0,60,60,EUR,mon-fri,08:00,18:00,day",
        "33,0.06,0,60,60,EUR,mon-fri,18:00,24:00,evening",
        "3314,0.08,0,60,60,EUR,mon-fri,08:00,18:00,centre",
    )
    assert found(t, "+33142685300", paris_time(*WINTER_WEEKDAY, 10, 0)).description == "centre"
    assert found(t, "+33142685300", night).description == "evening"
    # and when no prefix has a band then, nothing applies (though the site can dial it)
    assert t.lookup("+33142685300", paris_time(*WINTER_WEEKDAY, 3, 0)) is None
    assert t.can_dial("+33142685300")


def test_a_prefix_longer_than_the_number_does_not_match() -> None:
    t = table("3314268530012,1,0,60,60,EUR,*,,,long", "33,0.1,0,60,60,EUR,*,,,short")
    assert found(t, "+33142685300", paris_time(*WINTER_WEEKDAY, 10, 0)).description == "short"


def test_lookup_uses_an_index_not_a_scan() -> None:
    rows = [HEADER_LINE]
    for i in range(10_000):
        prefix = str(100_000 + i)
        rows.append(f"{prefix},0.10,0,60,60,EUR,mon-fri,08:00,18:00,")
        rows.append(f'{prefix},0.05,0,60,60,EUR,"sat,sun",,,')
    t = parse_csv("\n".join(rows), site="paris", timezone="Europe/Paris")
    assert len(t.tariffs) == 20_000
    numbers = [f"+{100_000 + (i * 7919) % 12_000}5550100" for i in range(10_000)]
    times = [paris_time(*WINTER_WEEKDAY, 10, 0) + timedelta(hours=37 * i) for i in range(10)]
    start = time.perf_counter()
    hits = sum(t.lookup(n, times[i % 10]) is not None for i, n in enumerate(numbers))
    elapsed = time.perf_counter() - start
    assert 0 < hits < 10_000
    assert elapsed < 0.5, f"10,000 lookups took {elapsed:.3f} s"


# --------------------------------------------------------------------------- cost


def tariff(first: int, step: int, price: str = "0.12", fee: str = "0") -> Tariff:
    return Tariff(
        prefix="33",
        price_per_minute=Decimal(price),
        connection_fee=Decimal(fee),
        first_increment=first,
        next_increment=step,
        currency="EUR",
    )


@pytest.mark.parametrize(
    ("first", "step", "seconds", "billed"),
    [
        (60, 60, 0, 60),
        (60, 60, 1, 60),
        (60, 60, 60, 60),
        (60, 60, 60.001, 120),
        (60, 60, 61, 120),
        (60, 60, 120, 120),
        (60, 60, 121, 180),
        (30, 6, 1, 30),
        (30, 6, 30, 30),
        (30, 6, 31, 36),
        (30, 6, 36, 36),
        (30, 6, 36.5, 42),
        (30, 6, 90.1, 96),
        (1, 1, 0.2, 1),
        (1, 1, 61.2, 62),
        (1, 1, 3600, 3600),
        (60, 1, 61, 61),
        (60, 1, Decimal("60.000001"), 61),
    ],
)
def test_billed_seconds(first: int, step: int, seconds: float, billed: int) -> None:
    assert tariff(first, step).billed_seconds(seconds) == billed


@pytest.mark.parametrize(
    ("first", "step", "price", "fee", "seconds", "cost"),
    [
        (60, 60, "0.12", "0.05", 61, "0.29"),  # 0.05 + 2 minutes x 0.12
        (60, 60, "0.12", "0.05", 0, "0.17"),
        (60, 60, "0.12", "0", 60, "0.12"),
        (30, 6, "0.12", "0", 31, "0.072"),  # 36 s
        (30, 6, "0.12", "0.05", 10, "0.11"),  # 30 s
        (30, 6, "0.10", "0", 100, "0.17"),  # 102 s
        (1, 1, "0.12", "0", 61.2, "0.124"),  # 62 s
        (1, 1, "0.10", "0", 1, "0.001667"),  # 0.0016666... rounded to 6 places
        (1, 1, "0.000030", "0", 1, "0.000001"),  # 0.0000005: half rounds up
        (1, 1, "0.000029", "0", 1, "0"),  # 0.000000483...
        (60, 60, "0", "0.25", 3600, "0.25"),  # connection fee only
        (60, 60, "1.123456", "2.000001", 7200, "136.814721"),
    ],
)
def test_cost_is_exact(
    first: int, step: int, price: str, fee: str, seconds: float, cost: str
) -> None:
    value = tariff(first, step, price, fee).cost(seconds)
    assert isinstance(value, Decimal)
    assert value == Decimal(cost)
    assert value.as_tuple().exponent == -6  # always 6 places


def test_call_cost_uses_the_band_in_force_when_the_call_starts() -> None:
    t = paris()
    # starts at 17:59 Paris on a weekday: a 10-minute call is all at the day rate
    at = paris_time(*WINTER_WEEKDAY, 17, 59)
    assert t.call_cost("+33491000000", at, 600) == Decimal("0.05") + 10 * Decimal("0.12")
    at = paris_time(*WINTER_WEEKDAY, 18, 0)
    assert t.call_cost("+33491000000", at, 600) == Decimal("0.05") + 10 * Decimal("0.06")
    # Paris centre, office hours: 30/6 at 0.08
    at = paris_time(*WINTER_WEEKDAY, 10, 0)
    assert t.call_cost("+33142685300", at, 31) == Decimal("0.048")
    # UK, 1/1 at 0.20 + 0.10
    assert t.call_cost("+442079460000", at, 61.5) == Decimal("0.306667")


@pytest.mark.parametrize("seconds", [-1, -0.001, float("nan"), float("inf"), Decimal("NaN")])
def test_bad_durations_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        tariff(60, 60).cost(seconds)


def test_durations_must_be_numbers() -> None:
    with pytest.raises(TypeError):
        tariff(60, 60).cost("60")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tariff(60, 60).cost(True)


# --------------------------------------------------------------------------- building directly


def test_tariff_checks_its_values() -> None:
    good: dict[str, Any] = {
        "prefix": "33",
        "price_per_minute": Decimal("0.1"),
        "connection_fee": Decimal(0),
        "first_increment": 60,
        "next_increment": 60,
        "currency": "EUR",
    }
    assert Tariff(**good).days == frozenset(range(7))
    assert Tariff(**{**good, "price_per_minute": 2}).price_per_minute == Decimal(2)
    assert Tariff(**{**good, "description": "  x  "}).description == "x"
    for changes in [
        {"prefix": "+33"},
        {"price_per_minute": Decimal("-1")},
        {"price_per_minute": Decimal("0.0000001")},
        {"price_per_minute": Decimal("Infinity")},
        {"first_increment": 0},
        {"currency": "eur"},
        {"days": frozenset()},
        {"days": {7}},
        {"start": 600, "end": 600},
        {"start": 0, "end": 1441},
        {"description": "a\tb"},
    ]:
        with pytest.raises(ValueError):
            Tariff(**{**good, **changes})
    with pytest.raises(TypeError, match="Decimal"):
        Tariff(**{**good, "price_per_minute": 0.1})


def test_cost_table_built_directly_is_checked_too() -> None:
    t = paris()
    again = CostTable(
        site="paris", timezone="Europe/Paris", currency="EUR", version=1, tariffs=list(t.tariffs)
    )
    assert again == t
    assert again.lookup("+33142685300", paris_time(*WINTER_WEEKDAY, 10, 0)) == t.tariffs[5]

    with pytest.raises(CostTableError) as info:
        CostTable(
            site="paris",
            timezone="Europe/Paris",
            currency="USD",
            version=1,
            tariffs=(t.tariffs[0], t.tariffs[0], t.tariffs[4]),
        )
    assert info.value.errors == [
        "tariffs[0]: currency EUR differs from the table's (USD); a table uses one currency",
        "tariffs[1]: currency EUR differs from the table's (USD); a table uses one currency",
        "tariffs[1]: duplicate of tariffs[0] (prefix 33, days mon-fri, 08:00-18:00)",
        "tariffs[2]: currency EUR differs from the table's (USD); a table uses one currency",
    ]
    with pytest.raises(CostTableError, match="no rows"):
        CostTable(site="paris", timezone="Europe/Paris", currency="EUR", version=1, tariffs=())
    with pytest.raises(CostTableError, match="not a known IANA"):
        CostTable(site="paris", timezone="Nowhere", currency="EUR", version=1, tariffs=t.tariffs)


# --------------------------------------------------------------------------- round trips


def test_to_csv_writes_the_canonical_form() -> None:
    t = table(
        ' 33 , 0.120 , 0 ,60,60,EUR,"Sat , SUN",08:00,24:00," say ""hi"", then go "',
        "331,1,0.5,30,6,EUR,mon-sun,00:00,24:00,",
        '1,0.1,0,1,1,EUR,"mon,tue,wed,fri",,,',
    )
    assert to_csv(t) == (
        f"{HEADER_LINE}\n"
        '33,0.120,0,60,60,EUR,"sat,sun",08:00,24:00,"say ""hi"", then go"\n'
        "331,1,0.5,30,6,EUR,mon-sun,,,\n"
        '1,0.1,0,1,1,EUR,"mon-wed,fri",,,\n'
    )


def test_round_trip_through_csv_and_json() -> None:
    t = parse_csv(PARIS_CSV, site="paris", timezone="Europe/Paris", version=3)
    assert parse_csv(to_csv(t), site="paris", timezone="Europe/Paris", version=3) == t
    assert to_csv(parse_csv(to_csv(t), site="paris", timezone="Europe/Paris")) == to_csv(t)
    back = table_from_json(table_to_json(t))
    assert back == t
    assert (back.site, back.timezone, back.currency, back.version) == (
        "paris",
        "Europe/Paris",
        "EUR",
        3,
    )
    assert back.lookup("+33142685300", paris_time(*WINTER_WEEKDAY, 10, 0)) == t.tariffs[5]
    assert table_from_json(table_to_json(t).encode()) == t


def test_table_from_json_refuses_bad_documents() -> None:
    good = table_to_json(paris())
    with pytest.raises(CostTableError, match="not a JSON document"):
        table_from_json("{")
    with pytest.raises(CostTableError, match="JSON object"):
        table_from_json("[]")
    with pytest.raises(CostTableError, match="format"):
        table_from_json(good.replace("faxfleet.cost-table/1", "other/2"))
    tampered = good.replace('"0.12"', '"1,2"').replace('"France night"]', '"France night","5"]')
    with pytest.raises(CostTableError) as info:
        table_from_json(tampered)
    assert info.value.errors == [
        "row 0: price_per_minute '1,2' is not a decimal (write e.g. 0.12)",
        "row 1: expected 10 columns, got 11",
    ]
    with pytest.raises(CostTableError, match="row 0: must be a list of 10 strings"):
        table_from_json(good.replace('["33","0.12"', '["33",0.12'))
    with pytest.raises(CostTableError, match="differs from the table's"):
        table_from_json(good.replace('"currency":"EUR"', '"currency":"USD"'))
    with pytest.raises(CostTableError, match="site"):
        table_from_json(good.replace('"site":"paris"', '"site":null'))


# hypothesis: any valid table survives both round trips unchanged

PREFIXES = st.one_of(st.just("*"), st.from_regex(r"[1-9][0-9]{0,14}", fullmatch=True))
MONEY = st.decimals(min_value=0, max_value=10_000, places=6, allow_nan=False)
DAYS = st.frozensets(st.integers(0, 6), min_size=1)
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=24)
ZONES = st.sampled_from(["Europe/Paris", "America/New_York", "Asia/Kolkata", "UTC"])


@st.composite
def tables(draw: st.DrawFn) -> CostTable:
    currency = draw(st.from_regex(r"[A-Z]{3}", fullmatch=True))
    rows = []
    for prefix in draw(st.lists(PREFIXES, min_size=1, max_size=5, unique=True)):
        # cut the day at distinct points: the bands between them never overlap
        cuts = sorted(draw(st.sets(st.integers(0, 1440), min_size=2, max_size=5)))
        for start, end in itertools.pairwise(cuts):
            rows.append(
                Tariff(
                    prefix=prefix,
                    price_per_minute=draw(MONEY),
                    connection_fee=draw(MONEY),
                    first_increment=draw(st.integers(1, 3600)),
                    next_increment=draw(st.integers(1, 3600)),
                    currency=currency,
                    days=draw(DAYS),
                    start=start,
                    end=end,
                    description=draw(TEXT),
                )
            )
    return CostTable(
        site=draw(st.text(min_size=1, max_size=10).filter(str.strip)),
        timezone=draw(ZONES),
        currency=currency,
        version=draw(st.integers(1, 2**40)),
        tariffs=draw(st.permutations(rows)),
    )


@settings(max_examples=200, deadline=None)
@given(tables())
def test_any_valid_table_round_trips(t: CostTable) -> None:
    text = to_csv(t)
    again = parse_csv(text, site=t.site, timezone=t.timezone, version=t.version)
    assert again == t
    assert to_csv(again) == text
    assert table_from_json(table_to_json(t)) == t


def reference_lookup(t: CostTable, number: str, at: datetime) -> Tariff | None:
    """The documented rule, by scanning every row: longest prefix in force, then "*"."""
    local = at.astimezone(ZoneInfo(t.timezone))
    minute = local.hour * 60 + local.minute
    digits = number[1:]
    in_force = [x for x in t.tariffs if x.covers(local.weekday(), minute)]
    matching = [x for x in in_force if x.prefix == "*" or digits.startswith(x.prefix)]
    return max(matching, key=lambda x: -1 if x.prefix == "*" else len(x.prefix), default=None)


@settings(max_examples=200, deadline=None)
@given(
    tables(),
    st.from_regex(r"\+[1-9][0-9]{0,14}", fullmatch=True),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.data(),
)
def test_lookup_agrees_with_a_scan_of_every_row(
    t: CostTable, number: str, at: datetime, data: st.DataObject
) -> None:
    # half the time, dial a number that starts with one of the table's prefixes
    prefix = data.draw(st.sampled_from([x.prefix for x in t.tariffs]))
    if prefix != "*" and data.draw(st.booleans()):
        number = ("+" + prefix + number[1:])[:16]
    assert t.lookup(number, at) == reference_lookup(t, number, at)
    assert t.can_dial(number) == any(
        x.prefix == "*" or number[1:].startswith(x.prefix) for x in t.tariffs
    )


def test_band_starts_in_local_time_across_dst() -> None:
    from datetime import UTC, datetime, timedelta

    text = (
        "prefix,price_per_minute,connection_fee,first_increment,next_increment,currency,"
        "days,start,end,description\n"
        "33,0.10,0,60,60,EUR,*,08:00,19:00,day\n"
        "33,0.01,0,60,60,EUR,*,19:00,24:00,evening\n"
        "33,0.01,0,60,60,EUR,*,00:00,08:00,night\n"
    )
    table = parse_csv(text, site="paris", timezone="Europe/Paris")
    winter = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 14, 12, 0, tzinfo=UTC)
    assert table.band_starts("+33142685300", winter, winter + timedelta(hours=12)) == [
        datetime(2026, 1, 14, 18, 0, tzinfo=UTC),  # 19:00 CET
        datetime(2026, 1, 14, 23, 0, tzinfo=UTC),  # midnight CET
    ]
    assert table.band_starts("+33142685300", summer, summer + timedelta(hours=12))[0] == (
        datetime(2026, 7, 14, 17, 0, tzinfo=UTC)  # 19:00 CEST
    )
    assert table.band_starts("+33142685300", winter, winter) == []
