"""The footage store (files by key, atomic publishing, a full disk) and the segment index."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.storage.db import make_sessionmaker
from appliance.storage.footage import DiskFull, InvalidKey, LocalFootageStore, free_key, key_camera, key_start
from appliance.storage.models import SEGMENT_COMPLETE, SEGMENT_MISSING, SEGMENT_RECORDING
from appliance.storage.segments import NewSegment, SegmentIndex, SegmentInfo, UnknownSegment

MOSCOW = timezone(timedelta(hours=3))
T0 = datetime(2026, 3, 1, 0, 30, 5, 250000, tzinfo=MOSCOW)  # 2026-02-28 21:30:05.25 UTC


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small RAM file system, to fill up for real (needs root)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (root needed): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ------------------------------------------------------------------------------ footage store ---


def test_keys_follow_the_utc_layout(tmp_path: Path) -> None:
    store = LocalFootageStore(tmp_path)
    key = store.path_for("cam-1", T0)
    assert key == "cam-1/2026-02-28/21/20260228T213005Z.mp4"
    assert key_camera(key) == "cam-1"
    assert key_start(key) == datetime(2026, 2, 28, 21, 30, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd",
        "/abs/2026-02-28/21/20260228T213005Z.mp4",
        "cam/../../x.mp4",
        "Cam/2026-02-28/21/x.mp4",
        "cam/2026-02-28/21/20260228T213005Z.mp4.part",
    ],
)
def test_keys_outside_the_layout_are_refused(tmp_path: Path, key: str) -> None:
    store = LocalFootageStore(tmp_path)
    with pytest.raises(InvalidKey):
        store.open_read(key)
    with pytest.raises(InvalidKey):
        store.open_write(key)


def test_naive_times_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="naive"):
        LocalFootageStore(tmp_path).path_for("cam1", datetime(2026, 1, 1))


def test_a_file_appears_under_its_key_only_when_finalised(tmp_path: Path) -> None:
    store = LocalFootageStore(tmp_path / "footage")
    key = store.path_for("cam1", T0)
    with store.open_write(key) as f:
        f.write(b"x" * 1000)
    assert list(store.iter_keys()) == []
    assert list(store.partial_keys()) == [key]
    assert store.exists(key)
    assert store.finalize(key) == 1000
    assert list(store.iter_keys()) == [key] == list(store.iter_keys("cam1"))
    assert list(store.iter_keys("cam2")) == []
    assert list(store.partial_keys()) == []
    assert store.size(key) == 1000 and store.used_bytes() == 1000
    assert store.free_bytes() > 0
    with store.open_read(key) as f:
        assert f.read() == b"x" * 1000
    # A key is written once: neither the partial nor the published file is ever overwritten.
    with pytest.raises(FileExistsError):
        store.open_write(key)
    (tmp_path / "footage" / (key + ".part")).write_bytes(b"again")
    with pytest.raises(FileExistsError):
        store.finalize(key)


def test_clashing_start_seconds_get_a_suffix(tmp_path: Path) -> None:
    store = LocalFootageStore(tmp_path)
    first = free_key(store, "cam1", T0)
    store.open_write(first).close()
    second = free_key(store, "cam1", T0 + timedelta(milliseconds=500))
    assert second == first.replace("Z.mp4", "Z-1.mp4")
    assert key_start(second) == key_start(first)


def test_files_outside_the_layout_are_not_keys(tmp_path: Path) -> None:
    store = LocalFootageStore(tmp_path)
    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam1" / "notes.txt").write_text("hello")
    (tmp_path / "cam1" / "copy.mp4").write_bytes(b"...")
    assert list(store.iter_keys()) == []


def test_delete_removes_empty_directories_only(tmp_path: Path) -> None:
    store = LocalFootageStore(tmp_path)
    keys = [store.path_for("cam1", T0), store.path_for("cam1", T0 + timedelta(seconds=10))]
    for key in keys:
        store.open_write(key).close()
        store.finalize(key)
    store.delete(keys[0])
    assert list(store.iter_keys()) == [keys[1]]
    store.delete(keys[1])
    assert not (tmp_path / "cam1" / "2026-02-28").exists()
    assert (tmp_path / "cam1").is_dir()


def test_a_full_disk_is_reported_as_disk_full(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "256k") as root:
        store = LocalFootageStore(root)
        key = store.path_for("cam1", T0)
        with store.open_write(key) as f, pytest.raises(DiskFull) as caught:
            f.write(os.urandom(512 * 1024))
        message = str(caught.value)
        assert "footage disk is full" in message and "MiB free" in message and "retention" in message
        # What fitted is intact and can still be published (or removed).
        assert store.finalize(key) > 0
        store.delete(key)


# ------------------------------------------------------------------------------ segment index ---


def _new(key: str, start: datetime, camera: str = "cam1") -> NewSegment:
    return NewSegment(camera, key, start, "h264", 1280, 720)


def _info(new: NewSegment, seconds: float = 10.0, sha: str = "a" * 64) -> SegmentInfo:
    return SegmentInfo(
        new.camera_id,
        new.key,
        new.start_utc,
        new.start_utc + timedelta(seconds=seconds),
        seconds,
        1234,
        sha,
        new.codec,
        new.width,
        new.height,
    )


async def test_index_lifecycle(db_engine: AsyncEngine) -> None:
    index = SegmentIndex(make_sessionmaker(db_engine))
    starts = [T0 + timedelta(seconds=10 * i) for i in range(4)]
    news = [_new(f"cam1/k{i}.mp4", s) for i, s in enumerate(starts)]
    for new in news:
        await index.add(new)
    await index.add(_new("cam2/other.mp4", T0, camera="cam2"))
    for new in news[:3]:
        await index.finalize(_info(new))
    rows = await index.list_range("cam1", starts[1] + timedelta(seconds=1), starts[2] + timedelta(seconds=1))
    assert [r.key for r in rows] == ["cam1/k1.mp4", "cam1/k2.mp4"]
    assert rows[0].start_utc == starts[1] and rows[0].start_utc.tzinfo == UTC
    assert rows[0].status == SEGMENT_COMPLETE and rows[0].sha256 == "a" * 64
    # The segment being written has no end yet: it belongs to ranges after its start, as far as the
    # longest possible segment.
    current = await index.list_range("cam1", starts[3] + timedelta(minutes=30), starts[3] + timedelta(hours=2))
    assert [(r.key, r.status) for r in current] == [("cam1/k3.mp4", SEGMENT_RECORDING)]
    later = await index.list_range("cam1", starts[3] + timedelta(hours=2), starts[3] + timedelta(hours=3))
    assert [r.key for r in later] == []
    newest = await index.newest("cam1")
    assert newest is not None and newest.key == "cam1/k3.mp4"
    assert await index.known_keys("cam1") == {n.key for n in news}
    assert len(await index.known_keys()) == 5

    heatmap = bytes(range(256))
    await index.mark_motion("cam1/k1.mp4", True, heatmap)
    row = await index.get("cam1/k1.mp4")
    assert row is not None and row.has_motion and row.motion_heatmap == heatmap and not row.legal_hold

    assert await index.mark_missing(["cam1/k0.mp4", "cam1/k3.mp4"], T0) == 1  # only complete rows
    assert (await index.statuses("cam1"))["cam1/k0.mp4"] == SEGMENT_MISSING
    assert [r.key for r in await index.list_range("cam1", starts[0], starts[1])] == []
    with_missing = await index.list_range("cam1", starts[0], starts[1], include_missing=True)
    assert [r.key for r in with_missing] == ["cam1/k0.mp4"]
    # A missing (or complete) row is evidence about a file: recording never overwrites it.
    with pytest.raises(UnknownSegment):
        await index.finalize(_info(news[0], sha="b" * 64))
    await index.restore("cam1/k0.mp4")
    assert (await index.statuses("cam1"))["cam1/k0.mp4"] == SEGMENT_COMPLETE

    assert await index.delete("cam1/k2.mp4") is True
    assert await index.delete("cam1/k2.mp4") is False
    with pytest.raises(UnknownSegment):
        await index.mark_motion("cam1/k2.mp4", True)


async def test_index_refuses_incomplete_finished_rows_and_bad_values(db_engine: AsyncEngine) -> None:
    index = SegmentIndex(make_sessionmaker(db_engine))
    await index.add(_new("cam1/a.mp4", T0))
    with pytest.raises(IntegrityError):
        async with db_engine.begin() as conn:
            await conn.execute(text("UPDATE segments SET status = 'complete' WHERE key = 'cam1/a.mp4'"))
    with pytest.raises(IntegrityError):
        await index.add(_new("cam1/a.mp4", T0))
    with pytest.raises(ValueError, match="H264 or HEVC"):
        NewSegment("cam1", "cam1/b.mp4", T0, "mjpeg", 640, 480)
    with pytest.raises(ValueError, match="sha256"):
        _info(_new("cam1/c.mp4", T0), sha="abc")
