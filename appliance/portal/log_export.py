"""The identification log as a CSV file, for a lawful request.

The file is made for a spreadsheet on a Russian office computer, opened by a double click:
- UTF-8 with a byte order mark, so that Excel reads Cyrillic names correctly;
- fields separated by a semicolon, the list separator of Russian Windows (Excel splits the
  columns only on the separator of the computer's region; LibreOffice asks and detects it);
- times twice: in UTC (what the database and the gateways' records use) and in the store's time
  with its offset (what a person compares with the till and the cameras), as ISO 8601 text;
- text typed by people (names, references) that a spreadsheet would run as a formula is
  prefixed with an apostrophe.

It is written in pieces (the header, then the rows of each batch the store reads), so that a long
export streams to the browser, whose download shows it coming in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from appliance.storage.guests import LogEntry
from appliance.web.timefmt import to_local

COLUMNS: Final = (
    "session_id",
    "method",
    "relogin",
    "phone_e164",
    "voucher_id",
    "guest_name",
    "document_type",
    "issued_by",
    "mac",
    "ip",
    "gateway",
    "gateway_ref",
    "consent_version",
    "promotions_consent",
    "start_utc",
    "start_local",
    "stop_utc",
    "stop_local",
    "end_reason",
    "bytes_in",
    "bytes_out",
    "provider_ref",
)
DELIMITER: Final = ";"
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
BOM: Final = "\ufeff"


def _text(value: str | None) -> str:
    """Free text, made inert for spreadsheets."""
    if value is None:
        return ""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def _utc(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else ""


def _local(moment: datetime | None, tz: ZoneInfo) -> str:
    return to_local(moment, tz).isoformat(timespec="seconds") if moment is not None else ""


def _lines(rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=DELIMITER, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def csv_header() -> str:
    return BOM + _lines([COLUMNS])


def csv_rows(entries: Iterable[LogEntry], tz: ZoneInfo) -> str:
    return _lines(_row(e, tz) for e in entries)


def _row(e: LogEntry, tz: ZoneInfo) -> list[object]:
    return [
        e.session_id,
        e.method,
        "yes" if e.relogin else "no",
        # A validated E.164 number: "+" and digits, which spreadsheets read as a number.
        e.phone_e164 or "",
        _text(e.voucher_id),
        _text(e.guest_name),
        _text(e.document_type),
        _text(e.issued_by),
        e.mac,
        e.ip,
        e.gateway,
        _text(e.gateway_ref),
        e.consent_version,
        "yes" if e.promotions_consent else "no",
        _utc(e.start_utc),
        _local(e.start_utc, tz),
        _utc(e.stop_utc),
        _local(e.stop_utc, tz),
        e.end_reason or "",
        e.bytes_in,
        e.bytes_out,
        _text(e.provider_id),
    ]
