"""The identification log as a CSV file, for a lawful request.

Times are given twice: in UTC (what the database and the gateway's records use) and in the
store's time with its offset (what a person reading the file compares with the till and the
cameras). The file starts with a UTF-8 byte order mark so that spreadsheet programs read Cyrillic
names correctly. Text typed by people (names, references) that a spreadsheet would take for a
formula is prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from appliance.storage.guests import SessionView
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
    "sms_provider_id",
)
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


def log_csv(views: Iterable[SessionView], tz: ZoneInfo) -> str:
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for view in views:
        s, who = view.session, view.identity
        writer.writerow(
            [
                s.id,
                s.method,
                "yes" if s.relogin else "no",
                # A validated E.164 number: "+" and digits, which spreadsheets read as a number.
                who.phone_e164 or "",
                _text(who.voucher_id),
                _text(who.guest_name),
                _text(who.document_type),
                _text(who.issued_by),
                s.mac,
                s.ip,
                s.gateway,
                _text(s.gateway_ref),
                s.consent_version,
                "yes" if s.promotions_consent else "no",
                _utc(s.start_utc),
                _local(s.start_utc, tz),
                _utc(s.stop_utc),
                _local(s.stop_utc, tz),
                s.end_reason or "",
                s.bytes_in,
                s.bytes_out,
                _text(s.provider_id),
            ]
        )
    return out.getvalue()
