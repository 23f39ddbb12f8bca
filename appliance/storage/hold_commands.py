"""`appliance footage hold | holds | release`: legal holds from the command line.

Like the other commands that write to the database, each brings the schema to head first. Every
hold placed or released is also a line on the `appliance.audit` logger (who, what, which range),
as the console writes its audit lines; the `legal_holds` table keeps the same facts for good.
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.cli import EXIT_USAGE
from appliance.config import Config
from appliance.evidence.commands import _count, _local, parse_time
from appliance.logs import setup_logging
from appliance.storage.commands import Job, _fail, _table
from appliance.storage.commands import _run as run_job
from appliance.storage.db import make_sessionmaker
from appliance.storage.holds import HoldError, HoldReleased, HoldStore
from appliance.storage.models_holds import LegalHold

audit = logging.getLogger("appliance.audit")

_MB: Final = 1_000_000
ALL_CAMERAS: Final = "all cameras"


def _os_user() -> str:
    """Who runs the command: under sudo, the person who ran sudo rather than root."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        return sudo_user
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry (a container)
        return f"uid {os.getuid()}"


def _camera(hold: LegalHold) -> str:
    return hold.camera_id or ALL_CAMERAS


def _range(hold: LegalHold, zone: ZoneInfo) -> str:
    return f"{_local(hold.start_utc, zone)} to {_local(hold.end_utc, zone)}"


def _footage(segments: int, size: int) -> str:
    return f"{_count(segments, 'segment')} ({size / _MB:,.1f} MB of footage)"


def _audit(message: str, action: str, hold: LegalHold, by: str, **more: object) -> None:
    audit.info(
        message,
        extra={
            "audit": action,
            "user": by,
            "hold_id": hold.id,
            "camera": _camera(hold),
            "from": hold.start_utc.astimezone(UTC).isoformat(),
            "to": hold.end_utc.astimezone(UTC).isoformat(),
            "reason": hold.reason,
            **more,
        },
    )


def _run(cfg: Config, job: Job) -> int:
    # The audit lines must reach the journal (or the terminal) even from a one-off command; a daemon
    # or a test that set up logging already keeps its own.
    if not logging.getLogger().handlers:
        setup_logging(cfg.logging.level, cfg.logging.format)
    return run_job(cfg, job, usage_errors=(HoldError,))


def _check_input(cfg: Config, camera: str | None, reason: str) -> None:
    """ValueError saying what to fix in --camera or --reason."""
    configured = [c.id for c in cfg.cameras]
    if camera is not None and camera not in configured:
        if not configured:
            raise ValueError(
                f"camera {camera!r} is not configured (no [[cameras]] in the configuration); leave --camera out"
            )
        raise ValueError(
            f"camera {camera!r} is not configured; the configured cameras are {', '.join(configured)}. "
            "Give one of them, or leave --camera out to hold every camera's footage"
        )
    if not reason.strip():
        raise ValueError("--reason is empty; say why the footage is held (a case or request number, who asked for it)")


def _hold_range(zone: ZoneInfo, start_text: str, end_text: str | None, now: datetime) -> tuple[datetime, datetime]:
    """--from and --to as aware datetimes (ValueError saying what to fix)."""
    start = parse_time(start_text, zone)
    end = parse_time(end_text, zone, end=True) if end_text is not None else now
    if end > now:
        raise ValueError(
            f"--to ({_local(end, zone)}) is later than now ({_local(now, zone)}): a hold covers footage already "
            "recorded. Leave --to out to hold up to now, and place another hold later if more footage is needed"
        )
    if start >= end:
        to = "now" if end_text is None else "--to"
        raise ValueError(
            f"--from ({_local(start, zone)}) is not before {to} ({_local(end, zone)}); give a --from earlier than that"
        )
    return start, end


def footage_hold(cfg: Config, camera: str | None, start_text: str, end_text: str | None, reason: str) -> int:
    zone = ZoneInfo(cfg.appliance.timezone)
    try:
        _check_input(cfg, camera, reason)
        start, end = _hold_range(zone, start_text, end_text, datetime.now(UTC))
    except ValueError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    by = _os_user()

    async def job(engine: AsyncEngine) -> str:
        placed = await HoldStore(make_sessionmaker(engine)).place(camera, start, end, reason, by)
        hold = placed.hold
        _audit("legal hold placed", "legal_hold_place", hold, by, segments=placed.segments, bytes=placed.bytes)
        lines = [
            f"Legal hold {hold.id} placed: {_camera(hold)}, {_range(hold, zone)}, "
            f"{_footage(placed.segments, placed.bytes)}.",
            "Retention keeps this footage, and the event clips cut from it, until the hold is released "
            f"(appliance footage release {hold.id}).",
        ]
        if placed.segments == 0:
            lines.append(
                "No footage is recorded in that range: check the camera and the times (store time, "
                f"{zone.key}); footage indexed there later is held all the same."
            )
        return "\n".join(lines)

    return _run(cfg, job)


def _status(hold: LegalHold, zone: ZoneInfo) -> str:
    if hold.released_at is None:
        return "active"
    return f"released {_local(hold.released_at, zone)} by {hold.released_by}"


def _rows(holds: Sequence[LegalHold], zone: ZoneInfo) -> list[tuple[str, ...]]:
    return [
        (
            str(h.id),
            _camera(h),
            _local(h.start_utc, zone),
            _local(h.end_utc, zone),
            " ".join(h.reason.split()),
            h.created_by,
            _local(h.created_at, zone),
            _status(h, zone),
        )
        for h in holds
    ]


def footage_holds(cfg: Config, active_only: bool = False) -> int:
    zone = ZoneInfo(cfg.appliance.timezone)

    async def job(engine: AsyncEngine) -> str:
        holds = await HoldStore(make_sessionmaker(engine)).list(active_only)
        if not holds:
            return (
                f"No {'active ' if active_only else ''}legal holds. Place one with: "
                "appliance footage hold --from TIME [--to TIME] [--camera ID] --reason TEXT"
            )
        header = ("ID", "CAMERA", "FROM", "TO", "REASON", "BY", "PLACED", "STATUS")
        return _table(header, _rows(holds, zone))

    return _run(cfg, job)


def footage_release(cfg: Config, hold_id: int) -> int:
    zone = ZoneInfo(cfg.appliance.timezone)
    by = _os_user()

    async def job(engine: AsyncEngine) -> str:
        try:
            released = await HoldStore(make_sessionmaker(engine)).release(hold_id, by)
        except HoldReleased as exc:
            raise HoldError(
                f"legal hold {exc.hold_id} was released already, at {_local(exc.released_at, zone)} by "
                f"{exc.released_by}; to keep that footage again, place a new hold with `appliance footage hold`"
            ) from exc
        hold = released.hold
        _audit(
            "legal hold released",
            "legal_hold_release",
            hold,
            by,
            segments=released.freed_segments,
            still_held=released.still_held,
        )
        lines = [
            f"Legal hold {hold.id} released: {_camera(hold)}, {_range(hold, zone)} (placed by {hold.created_by} "
            f"for: {' '.join(hold.reason.split())}).",
            f"No longer held: {_footage(released.freed_segments, released.freed_bytes)}; retention deletes it "
            "once its keep days are over.",
        ]
        if released.still_held:
            lines.append(f"Still held by other active holds: {_count(released.still_held, 'segment')} in that range.")
        return "\n".join(lines)

    return _run(cfg, job)
