"""The short clip an alert carries: at most `max_seconds` of the event's clip, cut by copy.

An event's clip runs from the pre-roll to the post-roll (15 s and more); the alert's clip starts
LEAD_S before the motion began (the person walking in is what the owner wants to see; the
snapshot already shows the peak) and is remuxed without re-encoding with the clip builder's own
pieces (appliance/cameras/clips.py), so cutting costs milliseconds. H.265 events use their H.264
rendition, which phones and browsers play. Cuts are kept in `cache_dir` for `keep` so that every
channel and every retry reuses one; older ones are deleted when a new one is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from appliance.cameras.clips import ClipMuxer, _demux, _select
from appliance.storage.footage import FootageStore
from appliance.storage.models import Event

LEAD_S: Final = 2.0
"""Seconds of footage before the motion began that the alert's clip starts with."""
CACHE_KEEP: Final = timedelta(days=1)
"""A cut is kept this long: the retries of an outage that lasts a day still find it."""
LENGTH_SLACK_S: Final = 0.05


def cut_clip(store: FootageStore, key: str, clip_start: datetime, start: datetime, seconds: float, out: Path) -> float:
    """Blocking: copy the packets from the last keyframe at or before `start` for at most
    `seconds` from the clip `key` (whose first frame is at `clip_start`) into the MP4 `out`;
    returns its duration. The cut begins at a keyframe, so its end is pulled in by the lead
    that keyframe adds."""
    end = start + timedelta(seconds=seconds)
    duration = 0.0
    for _ in range(2):
        duration = _remux(store, key, clip_start, start, end, out)
        excess = duration - seconds
        if excess <= LENGTH_SLACK_S or end - timedelta(seconds=excess) <= start:
            break
        end -= timedelta(seconds=excess)
    return duration


def _remux(store: FootageStore, key: str, clip_start: datetime, start: datetime, end: datetime, out: Path) -> float:
    remux: ClipMuxer | None = None
    try:
        for item in _select(_demux(store, [key], [clip_start]), start, end):
            remux = remux or ClipMuxer(out, item)
            remux.write(item)
    finally:
        if remux is not None:
            remux.close()
    if remux is None:
        raise FileNotFoundError(f"no picture in {key} between {start.isoformat()} and {end.isoformat()}")
    return remux.duration_s


class ClipCutter:
    def __init__(self, store: FootageStore, cache_dir: Path, keep: timedelta = CACHE_KEEP) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self.keep = keep
        self._locks: dict[str, asyncio.Lock] = {}

    async def clip_for(self, event: Event, max_seconds: float) -> bytes | None:
        """The alert's clip of the event (MP4 bytes); None when the event has no clip. Raises
        OSError (or PyAV's errors) when the footage cannot be read."""
        key = event.rendition_key or event.clip_key
        if key is None:
            return None
        if event.clip_duration_s is not None and event.clip_duration_s <= max_seconds:
            return await asyncio.to_thread(self._read_key, key)
        path = self.cache_dir / f"{event.id}-{round(max_seconds * 10)}.mp4"
        lock = self._locks.setdefault(path.name, asyncio.Lock())
        try:
            async with lock:
                if not path.exists():
                    start = max(event.clip_from, event.start_utc - timedelta(seconds=LEAD_S))
                    await asyncio.to_thread(self._cut, key, event.clip_from, start, max_seconds, path)
                return await asyncio.to_thread(path.read_bytes)
        finally:
            if not lock.locked():
                self._locks.pop(path.name, None)

    def _read_key(self, key: str) -> bytes:
        with self.store.open_read(key) as f:
            return f.read()

    def _cut(self, key: str, clip_start: datetime, start: datetime, seconds: float, path: Path) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._forget_old()
        with tempfile.TemporaryDirectory(prefix="cut-", dir=self.cache_dir) as tmp:
            scratch = Path(tmp) / path.name
            cut_clip(self.store, key, clip_start, start, seconds, scratch)
            scratch.replace(path)

    def _forget_old(self) -> None:
        horizon = time.time() - self.keep.total_seconds()
        for old in self.cache_dir.glob("*.mp4"):
            with contextlib.suppress(FileNotFoundError):
                if old.stat().st_mtime < horizon:
                    old.unlink()
