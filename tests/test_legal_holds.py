"""Legal holds on SQLite and PostgreSQL: placing one flags the footage it covers and the real
retention runner keeps it, releasing one frees only what no other active hold covers, footage
indexed later inside an active hold is held, and `appliance footage hold | holds | release` as a
person runs them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.cameras.retention import RetentionPolicy
from appliance.cli import main
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.footage import LocalFootageStore, segment_key
from appliance.storage.holds import HoldError, HoldReleased, HoldStore, UnknownHold
from appliance.storage.migrate import upgrade
from appliance.storage.models import Segment
from appliance.storage.segments import NewSegment, SegmentIndex
from appliance.storage.segments import SegmentInfo as IndexedSegment
from tests.gst_peer import free_port
from tests.test_retention_runner import NOW, SEGMENT, Rig, deleted_keys

REPO = Path(__file__).resolve().parent.parent
T0 = NOW - timedelta(days=40)
"""Long past every keep day of the default policy (7 / 14 / 30 days)."""


@pytest.fixture
def holds(db_engine: AsyncEngine) -> HoldStore:
    return HoldStore(make_sessionmaker(db_engine))


@pytest.fixture
def rig(db_engine: AsyncEngine, tmp_path: Path) -> Rig:
    return Rig(LocalFootageStore(tmp_path / "footage"), make_sessionmaker(db_engine))


async def held(rig: Rig) -> set[str]:
    async with rig.sessions() as session:
        return set(await session.scalars(select(Segment.key).where(Segment.legal_hold.is_(True))))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def indexed(camera: str, start: datetime, key: str | None = None, size: int = 1000) -> IndexedSegment:
    """A finished 10 s segment as the recorder reports it (the index does not look at files)."""
    key = key or segment_key(camera, start)
    return IndexedSegment(camera, key, start, start + SEGMENT, 10.0, size, "a" * 64, "h264", 1280, 720)


# ------------------------------------------------------------------------------- the store ---


async def test_a_hold_flags_what_it_covers_and_retention_keeps_it_while_older_footage_goes(
    rig: Rig, holds: HoldStore
) -> None:
    till = [await rig.record("till", at(s), size=1000 + s) for s in (0, 10, 20, 30)]
    door = await rig.record("door", at(10))
    _, clip, rendition = await rig.clip("till", at(12), at(14))  # cut from till[1]
    newest = [await rig.record(camera, NOW - timedelta(minutes=1)) for camera in ("till", "door")]

    # Closed [10, 20] against half-open segments: till[0] ends where the hold starts (none of its
    # footage), till[2] starts where it ends (its first frame is held).
    placed = await holds.place("till", at(10), at(20), "  Police request 42 ", "owner")

    assert (placed.segments, placed.bytes) == (2, 1010 + 1020)
    assert placed.hold.id is not None and placed.hold.reason == "Police request 42" and placed.hold.active
    assert await held(rig) == {till[1], till[2]}

    report = await rig.runner({"till": RetentionPolicy(), "door": RetentionPolicy()}).sweep(NOW)

    assert sorted(deleted_keys(report)) == sorted([till[0], till[3], door])
    assert all(rig.exists(k) for k in (till[1], till[2], clip, rendition, *newest))
    assert report.clips == []
    assert (await rig.ledger.verify(rig.store)).ok


async def test_an_all_cameras_hold_covers_every_camera(rig: Rig, holds: HoldStore) -> None:
    keys = [await rig.record(camera, at(0)) for camera in ("till", "door", "backroom")]
    outside = await rig.record("door", at(60))

    placed = await holds.place(None, at(5), at(6), "robbery", "owner")

    assert placed.segments == 3 and placed.hold.camera_id is None
    assert await held(rig) == set(keys)
    assert outside not in await held(rig)


async def test_release_clears_the_flags_no_other_active_hold_covers(rig: Rig, holds: HoldStore) -> None:
    till = [await rig.record("till", at(s)) for s in (0, 10, 20, 30)]
    door = await rig.record("door", at(20))
    first = (await holds.place("till", at(0), at(25), "insurance claim", "owner")).hold
    second = (await holds.place(None, at(22), at(35), "police request", "manager")).hold
    assert await held(rig) == {*till, door}

    released = await holds.release(first.id, "owner")

    assert (released.freed_segments, released.freed_bytes, released.still_held) == (2, 2000, 1)
    assert released.hold.released_by == "owner" and released.hold.released_at is not None
    assert await held(rig) == {till[2], till[3], door}
    assert [h.id for h in await holds.list(active_only=True)] == [second.id]

    with pytest.raises(HoldReleased, match=f"legal hold {first.id} was already released"):
        await holds.release(first.id, "manager")
    with pytest.raises(UnknownHold, match="there is no legal hold 999; `appliance footage holds` lists them"):
        await holds.release(999, "owner")

    assert (await holds.release(second.id, "manager")).freed_segments == 3
    assert await held(rig) == set()
    listed = await holds.list()
    assert [(h.id, h.active, h.released_by) for h in listed] == [
        (first.id, False, "owner"),
        (second.id, False, "manager"),
    ]

    # Released, the footage is ordinary old footage again.
    report = await rig.runner({"till": RetentionPolicy(), "door": RetentionPolicy()}).sweep(NOW)
    assert len(report.deletions) == 3  # each camera's newest (till[3], door) stays


async def test_footage_indexed_after_the_hold_inside_its_range_is_held(rig: Rig, holds: HoldStore) -> None:
    index = rig.index
    being_written = await rig.recording("till", at(50))
    hold = (await holds.place("till", at(0), at(60), "police request", "owner")).hold
    assert await held(rig) == {being_written}

    # The segment being written when the hold was placed stays held once finished.
    assert (await index.finalize(indexed("till", at(50), being_written))).legal_hold
    # A file reconciliation indexes after a crash, inside the range; another camera's is not held.
    assert (await index.add_complete(indexed("till", at(30)))).legal_hold
    assert not (await index.add_complete(indexed("door", at(30)))).legal_hold
    assert not (await index.add_complete(indexed("till", at(75)))).legal_hold
    # A segment opened after the hold's end whose start the recorder then places inside it.
    late = await index.add(NewSegment("till", segment_key("till", at(61)), at(61), "h264", 1280, 720))
    assert not late.legal_hold
    assert (await index.finalize(indexed("till", at(58), late.key))).legal_hold
    # One opened inside the range is held from the start.
    assert (await index.add(NewSegment("till", segment_key("till", at(59)), at(59), "h264", 1280, 720))).legal_hold

    await holds.release(hold.id, "owner")
    assert not (await index.add_complete(indexed("till", at(40)))).legal_hold


async def test_a_hold_needs_a_reason_and_a_range(holds: HoldStore) -> None:
    with pytest.raises(HoldError, match="needs a reason"):
        await holds.place("till", at(0), at(10), " \n", "owner")
    with pytest.raises(HoldError, match="must end after it starts"):
        await holds.place("till", at(10), at(10), "police request", "owner")
    assert await holds.list() == []


# ---------------------------------------------------------------------------- the commands ---

MSK = "Europe/Moscow"
FOOTAGE_START = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)  # 14:00 in the store's time


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "appliance.toml"
    cameras = "".join(
        f'[[cameras]]\nid = "{c}"\nname = "{c.title()}"\nmain_url = "rtsp://10.0.0.{n}/main"\n\n'
        for n, c in enumerate(("entrance", "till"), 2)
    )
    path.write_text(
        f'[appliance]\ndata_dir = "{tmp_path / "data"}"\ntimezone = "{MSK}"\n\n[database]\nurl = "{url}"\n\n{cameras}',
        encoding="utf-8",
    )
    return path


def record_footage(url: str) -> None:
    """Three 10 s segments of the entrance from 14:00 store time, 1.5 MB each, and one of the till."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            index = SegmentIndex(make_sessionmaker(engine))
            for camera, n in (("entrance", 0), ("entrance", 1), ("entrance", 2), ("till", 1)):
                start = FOOTAGE_START + n * SEGMENT
                await index.add_complete(indexed(camera, start, size=1_500_000))
        finally:
            await engine.dispose()

    asyncio.run(run())


def footage(config: Path, *args: str) -> int:
    return main(["footage", *args, "--config", str(config)])


def test_hold_list_and_release_from_the_command_line(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appliance.audit")
    config = write_config(tmp_path, db_url)
    record_footage(db_url)

    placed = footage(
        config,
        "hold",
        "--from",
        "2026-11-27 14:00:05",
        "--to",
        "2026-11-27T11:00:15+00:00",
        "--camera",
        "entrance",
        "--reason",
        "Police request 42",
    )

    out = capsys.readouterr()
    assert placed == 0, out.err
    assert out.out.splitlines()[0] == (
        "Legal hold 1 placed: entrance, 2026-11-27 14:00:05 MSK to 2026-11-27 14:00:15 MSK, "
        "2 segments (3.0 MB of footage)."
    )
    assert "until the hold is released (appliance footage release 1)" in out.out
    (record,) = [r for r in caplog.records if r.name == "appliance.audit"]
    assert record.getMessage() == "legal hold placed"
    assert record.__dict__["audit"] == "legal_hold_place" and record.__dict__["hold_id"] == 1
    assert record.__dict__["user"] and record.__dict__["camera"] == "entrance"
    assert (record.__dict__["from"], record.__dict__["to"]) == (
        "2026-11-27T11:00:05+00:00",
        "2026-11-27T11:00:15+00:00",
    )

    # Up to now by default, every camera; nothing recorded there yet is said, not an error.
    assert footage(config, "hold", "--from", "2026-12-01", "--reason", "stocktaking dispute") == 0
    out = capsys.readouterr()
    assert "Legal hold 2 placed: all cameras, 2026-12-01 00:00:00 MSK to " in out.out
    assert "0 segments (0.0 MB of footage)" in out.out and "No footage is recorded in that range" in out.out

    assert footage(config, "holds") == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "CAMERA", "FROM", "TO", "REASON", "BY", "PLACED", "STATUS"]
    assert first.startswith("1   entrance     2026-11-27 14:00:05 MSK  2026-11-27 14:00:15 MSK  Police request 42")
    assert first.endswith("active") and second.split()[:2] == ["2", "all"]

    assert footage(config, "release", "1") == 0
    released = capsys.readouterr().out
    assert released.startswith("Legal hold 1 released: entrance, 2026-11-27 14:00:05 MSK to 2026-11-27 14:00:15 MSK")
    assert "No longer held: 2 segments (3.0 MB of footage)" in released
    assert [r.__dict__["audit"] for r in caplog.records if r.name == "appliance.audit"] == [
        "legal_hold_place",
        "legal_hold_place",
        "legal_hold_release",
    ]

    assert footage(config, "release", "1") == 2
    assert "legal hold 1 was released already, at 2026-12-" in capsys.readouterr().err
    assert footage(config, "release", "7") == 2
    assert "there is no legal hold 7; `appliance footage holds` lists them" in capsys.readouterr().err
    assert footage(config, "holds", "--active") == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and listed[1].startswith("2 ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "yesterday"), "cannot read the time 'yesterday'; write it like '2026-11-27 14:00'"),
        (("--from", "2026-11-27 14:00", "--to", "2099-01-01"), "is later than now"),
        (
            ("--from", "2026-11-27 15:00", "--to", "2026-11-27 14:00"),
            "--from (2026-11-27 15:00:00 MSK) is not before --to",
        ),
        (("--from", "2099-01-01 00:00"), "is not before now"),
        (("--from", "2026-11-27 14:00", "--camera", "backdoor"), "the configured cameras are entrance, till"),
        (("--from", "2026-11-27 14:00", "--reason", "  "), "--reason is empty"),
    ],
    ids=["unreadable", "future", "inverted", "from-future", "unknown-camera", "no-reason"],
)
def test_bad_input_exits_2_before_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    # A database that cannot be reached shows that the input is checked before connecting.
    config = write_config(tmp_path, f"postgresql+asyncpg://shop@127.0.0.1:{free_port()}/appliance")
    reason = () if "--reason" in args else ("--reason", "police request")

    assert footage(config, "hold", *args, *reason) == 2

    assert message in capsys.readouterr().err


def test_a_database_that_cannot_be_reached_exits_1_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    config = write_config(tmp_path, f"postgresql+asyncpg://shop@127.0.0.1:{port}/appliance")

    for args in (("hold", "--from", "2026-11-27 14:00", "--reason", "police request"), ("holds",), ("release", "1")):
        assert footage(config, *args) == 1
        err = capsys.readouterr().err
        assert f"127.0.0.1:{port}" in err and "Check that the server is running" in err, err


def test_the_installed_command_writes_the_audit_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'data' / 'appliance.db'}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "footage",
            "hold",
            "--from",
            "2026-11-27 14:00",
            "--reason",
            "police",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "SUDO_USER": "anna"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Legal hold 1 placed: all cameras, 2026-11-27 14:00:00 MSK to ")
    (line,) = done.stderr.splitlines()
    audit = json.loads(line)
    assert audit["logger"] == "appliance.audit" and audit["msg"] == "legal hold placed"
    assert (audit["audit"], audit["user"], audit["hold_id"], audit["camera"]) == (
        "legal_hold_place",
        "anna",
        1,
        "all cameras",
    )
    assert audit["from"] == "2026-11-27T11:00:00+00:00" and audit["reason"] == "police"
