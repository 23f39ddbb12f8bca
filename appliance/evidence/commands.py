"""`appliance footage verify`: walk the evidence chains and re-hash the footage.

Read-only: it neither migrates the database nor creates a key, so that running it on a box kept
as evidence changes nothing on it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import date, datetime, timedelta
from typing import Final, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from appliance.config import Config
from appliance.evidence.keys import KeyFileError, KeyFileMissing, load_key
from appliance.evidence.ledger import SIGN_INTERVAL_S, EvidenceLedger
from appliance.evidence.verify import CameraReport, HashProgress, Problem, VerifyReport
from appliance.storage.commands import _database_problem, _fail
from appliance.storage.db import engine_from_config, make_sessionmaker
from appliance.storage.footage import LocalFootageStore
from appliance.storage.migrate import current_revision, head_revision

TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S %Z"
# Problems listed per camera after the first bad link; the rest are only counted.
MAX_PROBLEMS_SHOWN: Final = 10
# The progress line is redrawn at most this often, so that it costs nothing next to hashing.
PROGRESS_REDRAW_S: Final = 0.2
PROGRESS_BAR_WIDTH: Final = 30
_MB: Final = 1_000_000

WHAT_TO_DO: Final = (
    "What to do: keep the drive as it is. Do not delete, repair, re-record or reformat anything, and "
    "shut the appliance down cleanly if it has to be moved. Save this report (run the command again "
    "with `> verify-report.txt`), keep the key fingerprint above with it, and hand both to whoever "
    "investigates; the signed chain on the drive lets them check every claim made here."
)


class NoEvidence(Exception):
    """Nothing to verify yet (a fresh installation)."""


class SchemaBehind(Exception):
    """The database predates this version's schema; verifying must not migrate it."""


class UnknownCamera(Exception):
    pass


def parse_time(text: str, zone: ZoneInfo, *, end: bool = False) -> datetime:
    """A person's time: the store's local time unless an offset is given. A bare date as `end`
    means the end of that day."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"cannot read the time {text!r}; write it like '2026-11-27 14:00' (the store's time, {zone.key}) "
            "or '2026-11-27T14:00+03:00'"
        ) from None
    if end and len(value) == len(date.min.isoformat()):
        moment += timedelta(days=1) - timedelta(microseconds=1)
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime(TIME_FORMAT)


class ProgressLine:
    """A single self-rewriting line on a terminal: files and bytes re-hashed so far."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._drawn_at = 0.0
        self._drawn = False

    def __call__(self, p: HashProgress) -> None:
        now = time.monotonic()
        if p.files_done < p.files_total and now - self._drawn_at < PROGRESS_REDRAW_S:
            return
        self._drawn_at = now
        fraction = p.bytes_done / p.bytes_total if p.bytes_total else 1.0
        filled = round(fraction * PROGRESS_BAR_WIDTH)
        bar = "#" * filled + "." * (PROGRESS_BAR_WIDTH - filled)
        self._stream.write(
            f"\rRe-hashing footage [{bar}] {fraction:4.0%}  {p.bytes_done / _MB:,.0f}/{p.bytes_total / _MB:,.0f} MB"
            f"  {p.files_done}/{p.files_total} files"
        )
        self._drawn = True
        self._stream.flush()

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _problem_line(problem: Problem, zone: ZoneInfo) -> str:
    where = f"seq {problem.seq}"
    if problem.object_key is not None:
        where += f", {problem.object_key}"
    if problem.recorded_at is not None:
        where += f" (recorded {_local(problem.recorded_at, zone)})"
    return f"{where}: {problem.what}"


def _camera_lines(camera: CameraReport, zone: ZoneInfo) -> list[str]:
    if camera.records == 0 and camera.ok:
        return [f"{camera.camera_id}: nothing recorded in this time range"]
    counts = (
        f"{_count(camera.records, 'record')}: {camera.ok_records} intact, "
        f"{_count(camera.files_checked, 'file')} re-hashed, {_count(camera.deletions, 'recorded deletion')}"
    )
    signed = (
        f"signed up to seq {camera.signed_seq} at {_local(camera.signed_at, zone)}"
        if camera.signed_seq is not None and camera.signed_at is not None
        else "no valid signature yet"
    )
    if camera.first_problem is None:
        lines = [f"{camera.camera_id}: OK ({counts}; {signed})"]
    else:
        lines = [
            f"{camera.camera_id}: TAMPERING FOUND ({counts}; {signed})",
            f"  first bad link: {_problem_line(camera.first_problem, zone)}",
        ]
        others = [p for p in camera.problems if p is not camera.first_problem][:MAX_PROBLEMS_SHOWN]
        lines += [f"  also: {_problem_line(p, zone)}" for p in others]
        hidden = camera.problem_count - 1 - len(others)
        if hidden > 0:
            lines.append(f"  … and {hidden} more problems")
    lines += [
        f"  warning: {w}; the appliance signs new records every {SIGN_INTERVAL_S:.0f} s while it runs"
        for w in camera.warnings
    ]
    return lines


def render(report: VerifyReport, zone: ZoneInfo, start: datetime | None, end: datetime | None) -> str:
    lines = [f"Signatures checked with the appliance key, SHA-256 fingerprint {report.key_fingerprint}."]
    if start is not None or end is not None:
        lines.append(
            f"Footage recorded from {_local(start, zone) if start else 'the beginning'} "
            f"to {_local(end, zone) if end else 'now'}."
        )
    for camera in report.cameras:
        lines += _camera_lines(camera, zone)
    mb = report.bytes_hashed / _MB
    speed = f" at {mb / report.hashing_seconds:,.0f} MB/s" if report.hashing_seconds > 0 and mb else ""
    bad = [c.camera_id for c in report.cameras if not c.ok]
    if bad:
        lines += [
            f"RESULT: the evidence of {len(bad)} of {len(report.cameras)} cameras ({', '.join(bad)}) does not "
            "match what was recorded.",
            WHAT_TO_DO,
        ]
    else:
        lines.append(
            f"RESULT: intact ({_count(len(report.cameras), 'camera')} checked, {mb:,.1f} MB of footage "
            f"re-hashed{speed})."
        )
    return "\n".join(lines)


async def _verify(
    cfg: Config, engine: AsyncEngine, camera: str | None, start: datetime | None, end: datetime | None
) -> VerifyReport:
    revision = await current_revision(engine)
    if revision is None:
        raise NoEvidence
    if revision != head_revision():
        raise SchemaBehind(
            f"the database is at schema revision {revision}, this version needs {head_revision()}; "
            "start the appliance or run `appliance db upgrade` first (it changes no recorded data)"
        )
    key = load_key(cfg.appliance.data_dir)
    ledger = EvidenceLedger(make_sessionmaker(engine), key)
    known = await ledger.camera_ids()
    if not known:
        raise NoEvidence
    if camera is not None and camera not in known:
        raise UnknownCamera(f"no evidence is recorded for camera {camera!r}; cameras with evidence: {', '.join(known)}")
    bar = ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    try:
        return await ledger.verify(LocalFootageStore(cfg.footage_dir), camera, start, end, progress=bar)
    finally:
        if bar is not None:
            bar.close()


async def _run(cfg: Config, camera: str | None, start: datetime | None, end: datetime | None) -> VerifyReport:
    engine = engine_from_config(cfg)
    try:
        return await _verify(cfg, engine, camera, start, end)
    finally:
        await engine.dispose()


def footage_verify(cfg: Config, camera: str | None, start_text: str | None, end_text: str | None) -> int:
    zone = ZoneInfo(cfg.appliance.timezone)
    try:
        start = parse_time(start_text, zone) if start_text is not None else None
        end = parse_time(end_text, zone, end=True) if end_text is not None else None
    except ValueError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    if start is not None and end is not None and start > end:
        _fail(f"--from ({_local(start, zone)}) is after --to ({_local(end, zone)}); swap them")
        return EXIT_USAGE
    try:
        report = asyncio.run(_run(cfg, camera, start, end))
    except NoEvidence:
        print("Nothing to verify: no footage has been recorded with this database yet.")
        return EXIT_OK
    except UnknownCamera as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except KeyFileMissing as exc:
        _fail(
            f"{exc}. Footage has been recorded, so the key existed: without it the signatures cannot be "
            "checked. Restore the key from a backup; until then the footage cannot be shown to be unaltered"
        )
        return EXIT_FAILURE
    except (KeyFileError, SchemaBehind) as exc:
        _fail(str(exc))
        return EXIT_FAILURE
    except (OSError, SQLAlchemyError) as exc:
        _fail(_database_problem(cfg, exc))
        return EXIT_FAILURE
    print(render(report, zone, start, end))
    return EXIT_OK if report.ok else EXIT_FAILURE
