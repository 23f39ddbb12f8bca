"""The identification log as exported for a lawful request: read in batches on SQLite and
PostgreSQL, and written as a CSV file that a spreadsheet on a Russian computer opens as it is."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.portal.log_export import BOM, COLUMNS, csv_header, csv_rows
from appliance.storage.db import make_sessionmaker
from appliance.storage.guests import DeviceKey, GuestStore, LogEntry, LogQuery
from tests.portal_support import log_session

MOSCOW = ZoneInfo("Europe/Moscow")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
IP = "10.0.0.9"


async def test_batches_hold_every_row_once_in_order_even_with_equal_start_times(db_engine: AsyncEngine) -> None:
    guests = GuestStore(make_sessionmaker(db_engine))
    guest = await guests.guest_for_phone("+79161234567", T0)
    # Seven logins, three of them in the same second (several devices admitted at once).
    starts = [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=1), T0 + timedelta(seconds=1)]
    starts += [T0 + timedelta(minutes=m) for m in (5, 6, 7)]
    for i, start in enumerate(starts):
        await guests.start_session(log_session(f"{7 - i:032x}", guest, start, DeviceKey(f"aa:bb:cc:00:00:{i:02x}", IP)))
    other_day = await guests.guest_for_phone("+79169876543", T0)
    await guests.start_session(
        log_session("f" * 32, other_day, T0 + timedelta(days=2), DeviceKey("aa:bb:cc:00:00:ff", IP))
    )

    query = LogQuery(T0, T0 + timedelta(days=1))
    batches = [batch async for batch in guests.log_batches(query, 2)]
    assert [len(b) for b in batches] == [2, 2, 2, 1]
    entries = [e for b in batches for e in b]
    assert len({e.session_id for e in entries}) == 7
    assert [(e.start_utc, e.session_id) for e in entries] == sorted((e.start_utc, e.session_id) for e in entries)
    assert all(e.phone_e164 == "+79161234567" for e in entries)
    only = [e async for b in guests.log_batches(LogQuery(T0, T0 + timedelta(days=1), "00:00:05"), 2) for e in b]
    assert [e.mac for e in only] == ["aa:bb:cc:00:00:05"]
    assert [b async for b in guests.log_batches(LogQuery(T0 - timedelta(days=9), T0), 2)] == []


def _entry(**over: object) -> LogEntry:
    values: dict[str, object] = {
        "session_id": "0" * 32,
        "method": "voucher",
        "relogin": False,
        "phone_e164": None,
        "voucher_id": "17",
        "guest_name": "Иванова Мария",
        "document_type": "passport_rf",
        "issued_by": "anna",
        "mac": "aa:bb:cc:dd:ee:ff",
        "ip": "10.0.0.9",
        "gateway": "radius",
        "gateway_ref": None,
        "consent_version": "2025-09-01#abcd1234",
        "promotions_consent": True,
        "start_utc": datetime(2026, 7, 1, 21, 30, tzinfo=UTC),
        "stop_utc": datetime(2026, 7, 1, 22, 5, 9, tzinfo=UTC),
        "end_reason": "gateway",
        "bytes_in": 2**33,
        "bytes_out": 1_234,
        "provider_id": None,
        **over,
    }
    return LogEntry(**values)  # type: ignore[arg-type]


def test_the_file_opens_in_a_russian_spreadsheet_with_local_times_and_inert_text() -> None:
    body = csv_header() + csv_rows([_entry(), _entry(guest_name="=cmd|'/c calc'!A1", phone_e164=None)], MOSCOW)
    data = body.encode("utf-8")
    assert data.startswith(b"\xef\xbb\xbf"), "the byte order mark tells Excel the file is UTF-8"
    assert body.count("\r\n") == 3
    header, first, second = csv.reader(io.StringIO(body.removeprefix(BOM)), delimiter=";")
    assert tuple(header) == COLUMNS
    row = dict(zip(COLUMNS, first, strict=True))
    # 21:30 UTC is 00:30 the next day in Moscow: the local time carries its date and offset.
    assert (row["start_utc"], row["start_local"]) == ("2026-07-01T21:30:00+00:00", "2026-07-02T00:30:00+03:00")
    assert row["stop_local"] == "2026-07-02T01:05:09+03:00"
    assert (row["guest_name"], row["bytes_in"], row["promotions_consent"]) == ("Иванова Мария", str(2**33), "yes")
    assert dict(zip(COLUMNS, second, strict=True))["guest_name"] == "'=cmd|'/c calc'!A1"


def test_an_open_session_has_empty_stop_fields() -> None:
    [row] = csv.reader(io.StringIO(csv_rows([_entry(stop_utc=None, end_reason=None)], MOSCOW)), delimiter=";")
    fields = dict(zip(COLUMNS, row, strict=True))
    assert (fields["stop_utc"], fields["stop_local"], fields["end_reason"]) == ("", "", "")
