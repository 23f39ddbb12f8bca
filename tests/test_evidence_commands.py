"""The pieces of `appliance footage verify` a person sees: times they type, the progress line."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from appliance.evidence.commands import ProgressLine, parse_time
from appliance.evidence.verify import HashProgress

MOSCOW = ZoneInfo("Europe/Moscow")


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-11-27 14:00", False, datetime(2026, 11, 27, 11, 0, tzinfo=UTC)),
        ("2026-11-27T14:00:30", False, datetime(2026, 11, 27, 11, 0, 30, tzinfo=UTC)),
        ("2026-11-27T14:00+05:00", False, datetime(2026, 11, 27, 9, 0, tzinfo=UTC)),
        ("2026-11-27T09:00Z", False, datetime(2026, 11, 27, 9, 0, tzinfo=UTC)),
        ("2026-11-27", False, datetime(2026, 11, 26, 21, 0, tzinfo=UTC)),
        # A bare date as the end of a range means the whole of that day.
        ("2026-11-27", True, datetime(2026, 11, 27, 20, 59, 59, 999999, tzinfo=UTC)),
        (" 2026-11-27 14:00 ", True, datetime(2026, 11, 27, 11, 0, tzinfo=UTC)),
    ],
)
def test_times_are_the_stores_unless_an_offset_is_given(text: str, end: bool, expected: datetime) -> None:
    assert parse_time(text, MOSCOW, end=end) == expected


@pytest.mark.parametrize("text", ["yesterday", "27.11.2026 14:00", "2026-11-27 25:00", ""])
def test_unreadable_times_say_how_to_write_them(text: str) -> None:
    with pytest.raises(ValueError, match=r"write it like '2026-11-27 14:00' \(the store's time, Europe/Moscow\)"):
        parse_time(text, MOSCOW)


def test_offset_survives_as_given() -> None:
    assert parse_time("2026-11-27T14:00+03:00", MOSCOW).utcoffset() == timezone(timedelta(hours=3)).utcoffset(None)


def test_progress_line_rewrites_one_line_and_ends_it() -> None:
    out = io.StringIO()
    line = ProgressLine(out)
    line(HashProgress(1, 4, 250_000_000, 1_000_000_000))
    line(HashProgress(2, 4, 500_000_000, 1_000_000_000))  # too soon after the first: skipped
    line(HashProgress(4, 4, 1_000_000_000, 1_000_000_000))  # the last one is always drawn
    line.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert " 25%  250/1,000 MB  1/4 files" in text
    assert "[" + "#" * 30 + "] 100%  1,000/1,000 MB  4/4 files" in text


def test_progress_line_that_never_drew_leaves_no_blank_line() -> None:
    out = io.StringIO()
    ProgressLine(out).close()
    assert out.getvalue() == ""
