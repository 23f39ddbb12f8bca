"""Reconciling footage files and the index after crashes, lost databases and meddling."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.cameras.fanout import StreamFanout
from appliance.cameras.pipeline import record_segment
from appliance.cameras.reconcile import playable_end, reconcile
from appliance.cameras.recorder import Recorder
from appliance.evidence.ledger import EvidenceLedger
from appliance.evidence.verify import CONTENT_CHANGED
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.footage import LocalFootageStore, key_start
from appliance.storage.migrate import upgrade
from appliance.storage.models import SEGMENT_COMPLETE, SEGMENT_MISSING
from appliance.storage.segments import NewSegment, SegmentIndex, SegmentInfo
from tests.recorder_support import CLIP_FPS, check_playable, encode_clip, feed_clip, wait_for

T0 = datetime(2026, 5, 4, 9, 0, 0, tzinfo=UTC)
SEGMENT_S = 3.0


async def _record(root: Path, clip: Path, db_file: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{db_file}")
    await upgrade(engine)
    index = SegmentIndex(make_sessionmaker(engine))
    fanout = StreamFanout("cam1")
    recorder = Recorder(
        "cam1", fanout.subscribe("recorder", 1000), LocalFootageStore(root), index, segment_seconds=SEGMENT_S
    )
    task = asyncio.create_task(recorder.run())
    await asyncio.to_thread(feed_clip, fanout, clip, T0)
    await wait_for(lambda: recorder.status.segments == 3, 20, "three segments")
    recorder.stop()
    await task
    await engine.dispose()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 3 s segments of camera cam1, recorded once (with an index that is then thrown away)."""
    d = tmp_path_factory.mktemp("archive")
    clip = encode_clip(d / "clip.mp4", 3 * SEGMENT_S)
    asyncio.run(_record(d / "footage", clip, d / "scratch.db"))
    return d / "footage"


@pytest.fixture
def store(archive: Path, tmp_path: Path) -> LocalFootageStore:
    shutil.copytree(archive, tmp_path / "footage")
    return LocalFootageStore(tmp_path / "footage")


@pytest.fixture
def index(db_engine: AsyncEngine) -> SegmentIndex:
    return SegmentIndex(make_sessionmaker(db_engine))


def _digests(store: LocalFootageStore) -> dict[str, str]:
    return {k: hashlib.sha256((store.root / k).read_bytes()).hexdigest() for k in store.iter_keys()}


def _box_offsets(data: bytes, kind: bytes) -> list[int]:
    offsets, pos = [], 0
    while pos + 8 <= len(data):
        size, found = struct.unpack_from(">I4s", data, pos)
        if found == kind:
            offsets.append(pos)
        pos += size
    return offsets


async def test_a_new_database_indexes_the_archive_and_deletes_nothing(
    store: LocalFootageStore, index: SegmentIndex
) -> None:
    before = _digests(store)
    report = await reconcile(store, index, ["cam1"])
    assert sorted(report.indexed) == sorted(before) and len(before) == 3
    assert _digests(store) == before
    rows = await index.list_range("cam1", T0, T0 + timedelta(hours=1))
    assert {r.key: r.sha256 for r in rows} == before
    for row in rows:
        assert row.status == SEGMENT_COMPLETE and row.start_utc == key_start(row.key)
        assert row.duration_s == pytest.approx(SEGMENT_S, abs=1 / CLIP_FPS)
        assert row.size_bytes == (store.root / row.key).stat().st_size
        assert (row.codec, row.width, row.height) == ("h264", 320, 240)
    # Running it again finds nothing to do.
    again = await reconcile(store, index, ["cam1"])
    assert not again.changed and again.problems == []


async def test_a_crashed_partial_is_cut_after_its_last_complete_fragment(
    store: LocalFootageStore, index: SegmentIndex
) -> None:
    source = store.root / sorted(store.iter_keys())[0]
    data = source.read_bytes()
    last_moof = _box_offsets(data, b"moof")[-1]
    # A kill -9 in the middle of writing the last fragment: one partial with its "recording" row,
    # one whose row never made it to the database.
    with_row = store.path_for("cam1", T0 + timedelta(minutes=1))
    without_row = store.path_for("cam1", T0 + timedelta(minutes=2))
    for key in (with_row, without_row):
        (store.root / (key + ".part")).parent.mkdir(parents=True, exist_ok=True)
        (store.root / (key + ".part")).write_bytes(data[: last_moof + (len(data) - last_moof) // 2])
    start = T0 + timedelta(minutes=1, seconds=0.25)
    await index.add(NewSegment("cam1", with_row, start, "h264", 320, 240))
    hooked: list[SegmentInfo] = []

    async def hook(info: SegmentInfo) -> None:
        hooked.append(info)

    report = await reconcile(store, index, ["cam1"], on_segment=hook)
    assert sorted(report.repaired) == sorted([with_row, without_row]) and report.problems == []
    assert list(store.partial_keys()) == []
    for key in (with_row, without_row):
        path = store.root / key
        assert path.stat().st_size == last_moof
        duration, _codec, _tag = check_playable(path)
        # Lost: the fragment being written, one second at most.
        assert SEGMENT_S - 1 - 1 / CLIP_FPS <= duration < SEGMENT_S
        row = await index.get(key)
        assert row is not None and row.status == SEGMENT_COMPLETE
        assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row.duration_s == pytest.approx(duration, abs=0.01)
    assert (await index.get(with_row)).start_utc == start  # type: ignore[union-attr]
    assert [i.key for i in hooked] == [k for k in report.repaired]


async def test_a_partial_without_a_complete_fragment_goes_with_its_row(
    store: LocalFootageStore, index: SegmentIndex
) -> None:
    data = (store.root / sorted(store.iter_keys())[0]).read_bytes()
    key = store.path_for("cam1", T0 + timedelta(minutes=1))
    partial = store.root / (key + ".part")
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(data[: _box_offsets(data, b"moof")[0] + 100])
    await index.add(NewSegment("cam1", key, T0 + timedelta(minutes=1), "h264", 320, 240))
    with partial.open("rb") as f:
        assert playable_end(f)[1] == 0
    report = await reconcile(store, index, ["cam1"])
    assert report.discarded == [key] and not partial.exists() and await index.get(key) is None
    assert len(report.indexed) == 3  # the complete files, unknown to this new index, are kept and indexed


async def test_rows_and_files_out_of_step_are_settled_and_unreadable_files_left_alone(
    store: LocalFootageStore, index: SegmentIndex
) -> None:
    await reconcile(store, index, ["cam1"])
    first, second, third = sorted(store.iter_keys())
    kept = {k: (store.root / k).read_bytes() for k in (first, second)}
    # Someone deletes a file; the recorder crashed after publishing a file but before its row was
    # completed; a row was added but not a byte written; a file that is no MP4 sits in the layout.
    (store.root / first).unlink()
    await index.delete(second)
    await index.add(NewSegment("cam1", second, key_start(second), "h264", 320, 240))
    ghost = store.path_for("cam1", T0 + timedelta(minutes=5))
    await index.add(NewSegment("cam1", ghost, T0 + timedelta(minutes=5), "h264", 320, 240))
    junk = store.path_for("cam1", T0 + timedelta(minutes=9))
    (store.root / junk).parent.mkdir(parents=True, exist_ok=True)
    (store.root / junk).write_bytes(b"this is not a video" * 100)
    # And a camera this appliance does not record shares the database: none of its rows are touched.
    other = NewSegment("cam9", "cam9/2026-05-04/09/20260504T090000Z.mp4", T0, "h264", 320, 240)
    await index.add(other)

    report = await reconcile(store, index, ["cam1"])
    assert report.missing == [first] and report.completed == [second] and report.dropped_rows == [ghost]
    assert report.indexed == [] and len(report.problems) == 1 and junk in report.problems[0]
    assert (store.root / junk).exists() and await index.get(junk) is None
    missing = await index.get(first)
    assert missing is not None and missing.status == SEGMENT_MISSING and missing.missing_since is not None
    completed = await index.get(second)
    assert completed is not None and completed.status == SEGMENT_COMPLETE
    assert completed.sha256 == hashlib.sha256(kept[second]).hexdigest()
    assert await index.get(ghost) is None
    assert (await index.get(other.key)) is not None and third in await index.known_keys("cam1")

    # The file comes back from a backup altered: reported, the row keeps the original hash.
    (store.root / first).write_bytes(kept[second])
    report = await reconcile(store, index, ["cam1"])
    assert report.restored == [] and any("different content" in p for p in report.problems)
    # Then the genuine one: the row is complete again.
    (store.root / first).write_bytes(kept[first])
    report = await reconcile(store, index, ["cam1"])
    assert report.restored == [first]
    assert (await index.get(first)).status == SEGMENT_COMPLETE  # type: ignore[union-attr]


async def test_a_complete_segment_missing_from_the_evidence_chain_is_chained_and_verified(
    store: LocalFootageStore, db_engine: AsyncEngine
) -> None:
    """A crash (or "database is locked") between completing a segment's row and appending it to the
    evidence chain: verify then neither checked nor flagged the file. Reconcile appends it, with the
    hash the recorder computed, so a file changed meanwhile is reported."""
    sessions = make_sessionmaker(db_engine)
    index = SegmentIndex(sessions)
    ledger = EvidenceLedger(sessions, Ed25519PrivateKey.generate())

    async def chain(info: SegmentInfo) -> None:
        await record_segment(ledger, info)

    await reconcile(store, index, ["cam1"])  # the archive indexed
    first, second, third = sorted(store.iter_keys())
    for key in (first, third):
        row = await index.get(key)
        assert row is not None
        await chain(SegmentInfo.of_row(row))
    # The second never reached the chain; then one byte of it changes.
    path = store.root / second
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    await ledger.sign_heads(T0 + timedelta(hours=1))
    unchecked = await ledger.verify(store)
    assert unchecked.ok and unchecked.cameras[0].files_checked == 2

    report = await reconcile(store, index, ["cam1"], on_segment=chain, chained=ledger.recorded_keys)

    assert report.rechained == [second] and report.changed and report.problems == []
    assert await ledger.recorded_keys("cam1") == {first, second, third}
    await ledger.sign_heads(T0 + timedelta(hours=2))
    checked = await ledger.verify(store)
    assert checked.cameras[0].files_checked == 3
    assert [(p.object_key, p.what) for c in checked.cameras for p in c.problems] == [(second, CONTENT_CHANGED)]
    # Nothing is appended twice.
    again = await reconcile(store, index, ["cam1"], on_segment=chain, chained=ledger.recorded_keys)
    assert again.rechained == [] and not again.changed


async def test_a_failed_chain_append_is_not_reported_as_rechained(
    store: LocalFootageStore, index: SegmentIndex
) -> None:
    await reconcile(store, index, ["cam1"])

    async def nothing_chained(_camera: str) -> set[str]:
        return set()

    async def broken(_info: SegmentInfo) -> None:
        raise OSError("database is locked")

    report = await reconcile(store, index, ["cam1"], on_segment=broken, chained=nothing_chained)
    assert report.rechained == [] and not report.changed
