"""Where footage files live, behind a small interface.

Today the files are on the box's own disk (`LocalFootageStore`); a chain of shops will later keep
them in S3-compatible storage, so the recorder, reconciliation and retention only ever talk to a
`FootageStore` and name files by *key*, a relative path in the layout

    <camera>/<YYYY-MM-DD>/<HH>/<YYYYMMDDTHHMMSSZ>.mp4      (UTC; "-N" before ".mp4" on a clash)

Event clips (appliance/cameras/clips.py) live in the same store under their own layout,

    clips/<camera>/<YYYY-MM-DD>/<event id>.mp4        (and <event id>.h264.mp4, an H.264 rendition)

which `iter_keys` and `partial_keys` never list: reconciliation and retention see segments only.

A file is written sequentially (never seeked, which an S3 multipart upload also needs) under a
temporary "partial" name and becomes visible under its key only when `finalize` publishes it, so
a reader never sees half a file. A partial left behind by a crash stays until reconciliation
repairs or discards it; nothing here deletes a file because some index does not know it.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Final, Protocol

SEGMENT_SUFFIX: Final = ".mp4"
PARTIAL_SUFFIX: Final = ".part"
KEY_TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"

# Camera ids are config slugs; a key is built from them, so the same shape is required here:
# anything else could climb out of the footage directory.
_CAMERA_ID = r"[a-z0-9][a-z0-9_-]{0,31}"
KEY_PATTERN: Final = re.compile(
    rf"(?P<camera>{_CAMERA_ID})/(?P<day>\d{{4}}-\d{{2}}-\d{{2}})/(?P<hour>\d{{2}})/"
    rf"(?P<stamp>\d{{8}}T\d{{6}}Z)(?:-(?P<clash>[1-9]\d{{0,3}}))?{re.escape(SEGMENT_SUFFIX)}"
)
CLIPS_DIR: Final = "clips"
RENDITION_SUFFIX: Final = ".h264"
# An event id is the camera id and the event's UTC start to the millisecond (cameras/events.py).
CLIP_KEY_PATTERN: Final = re.compile(
    rf"{CLIPS_DIR}/(?P<camera>{_CAMERA_ID})/(?P<day>\d{{4}}-\d{{2}}-\d{{2}})/"
    rf"(?P<event>(?P=camera)-\d{{8}}T\d{{6}}\.\d{{3}}Z)(?:{re.escape(RENDITION_SUFFIX)})?{re.escape(SEGMENT_SUFFIX)}"
)
# Clashes happen when two segments of one camera start within the same second (a reconnect right
# after a cut); a handful of suffixes covers that, more means something is badly wrong.
MAX_KEY_CLASH: Final = 99
_DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
_MIB: Final = 1024 * 1024


class DiskFull(OSError):
    """The footage disk (or the user's quota on it) is full; the message says what to do."""

    def __str__(self) -> str:
        return str(self.strerror)


class InvalidKey(ValueError):
    """A key that is not in the footage layout (and might point outside the footage directory)."""


class FootageStore(Protocol):
    """Footage files by key. Methods block (disk or network I/O): call them from a thread."""

    def path_for(self, camera_id: str, start_utc: datetime) -> str:
        """The key of a segment of `camera_id` starting at `start_utc` (any aware datetime)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the key is taken, by a published file or by a partial one."""
        ...

    def open_write(self, key: str) -> io.RawIOBase:
        """A sequential, unbuffered writer for the key's partial file (created, never overwritten).
        Raises DiskFull when the disk is full, here or from `write`."""
        ...

    def finalize(self, key: str) -> int:
        """Make the written partial durable and publish it under its key (atomically); its size."""
        ...

    def abort(self, key: str) -> None:
        """Throw a partial file away (it held nothing worth keeping)."""
        ...

    def partial_keys(self, camera_id: str | None = None) -> Iterator[str]:
        """Keys whose partial file was left behind (the writer crashed or the disk filled)."""
        ...

    def open_partial(self, key: str) -> BinaryIO:
        """The partial file for reading and truncating, to repair it after a crash."""
        ...

    def open_read(self, key: str) -> BinaryIO: ...

    def delete(self, key: str) -> None: ...

    def size(self, key: str) -> int: ...

    def iter_keys(self, camera_id: str | None = None) -> Iterator[str]:
        """Keys of published files, in no particular order."""
        ...

    def free_bytes(self) -> int: ...

    def used_bytes(self) -> int: ...


def segment_key(camera_id: str, start_utc: datetime, clash: int = 0) -> str:
    """The layout's key; `clash` > 0 adds "-N" for a second segment starting in the same second."""
    if start_utc.tzinfo is None:
        raise ValueError(f"naive datetime {start_utc.isoformat()}; pass an aware one")
    at = start_utc.astimezone(UTC)
    suffix = f"-{clash}" if clash else ""
    key = f"{camera_id}/{at:%Y-%m-%d}/{at:%H}/{at.strftime(KEY_TIME_FORMAT)}{suffix}{SEGMENT_SUFFIX}"
    check_key(key)
    return key


def clip_key(camera_id: str, event_id: str, start_utc: datetime, *, rendition: bool = False) -> str:
    """The key of an event's clip (or of its H.264 rendition); InvalidKey for an id that is not
    this camera's `<camera>-<YYYYMMDDTHHMMSS.mmmZ>`."""
    if start_utc.tzinfo is None:
        raise ValueError(f"naive datetime {start_utc.isoformat()}; pass an aware one")
    day = start_utc.astimezone(UTC)
    key = f"{CLIPS_DIR}/{camera_id}/{day:%Y-%m-%d}/{event_id}{RENDITION_SUFFIX if rendition else ''}{SEGMENT_SUFFIX}"
    if CLIP_KEY_PATTERN.fullmatch(key) is None:
        raise InvalidKey(f"event id {event_id!r} is not <camera>-<YYYYMMDDTHHMMSS.mmmZ> of camera {camera_id!r}")
    return key


def check_key(key: str) -> re.Match[str]:
    """The key's parts (a segment's or a clip's; both have "camera"), or InvalidKey."""
    match = KEY_PATTERN.fullmatch(key) or CLIP_KEY_PATTERN.fullmatch(key)
    if match is None:
        raise InvalidKey(
            f"{key!r} is not a footage key (<camera>/<YYYY-MM-DD>/<HH>/<YYYYMMDDTHHMMSSZ>.mp4 for a segment, "
            "clips/<camera>/<YYYY-MM-DD>/<event id>.mp4 for a clip)"
        )
    return match


def key_start(key: str) -> datetime:
    """The UTC start time a segment key's file name records."""
    match = KEY_PATTERN.fullmatch(key)
    if match is None:
        raise InvalidKey(f"{key!r} is not a segment key (<camera>/<YYYY-MM-DD>/<HH>/<YYYYMMDDTHHMMSSZ>.mp4)")
    return datetime.strptime(match["stamp"], KEY_TIME_FORMAT).replace(tzinfo=UTC)


def key_camera(key: str) -> str:
    return check_key(key)["camera"]


def disk_full_message(root: Path, free: int | None) -> str:
    room = f" ({free / _MIB:.1f} MiB free)" if free is not None else ""
    return (
        f"the footage disk is full{room} at {root}: recording pauses and resumes by itself once "
        "space is free; shorten retention or give the footage a bigger disk"
    )


class _FootageWriter(io.RawIOBase):
    """An unbuffered, non-seekable writer that reports a full disk as DiskFull."""

    def __init__(self, raw: BinaryIO, full: Callable[[OSError], DiskFull]) -> None:
        self._raw = raw
        self._full = full

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        # All or an error: FFmpeg takes a short count as done, which would leave a hole in the file
        # (an unbuffered write comes back short just before the disk fills).
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += self._raw.write(view[done:])
        except OSError as exc:
            if exc.errno in _DISK_FULL_ERRNOS:
                raise self._full(exc) from exc
            raise
        return done

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class LocalFootageStore:
    """Footage under a directory of the local disk.

    Durability: `finalize` fsyncs the file, renames it into place and fsyncs the directory, so a
    power cut leaves either the partial or the complete file, never a truncated published one.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / PurePosixPath(key)

    def _partial(self, key: str) -> Path:
        path = self._path(key)
        return path.with_name(path.name + PARTIAL_SUFFIX)

    def _full(self, exc: OSError) -> DiskFull:
        try:
            free: int | None = self.free_bytes()
        except OSError:
            free = None
        return DiskFull(exc.errno, disk_full_message(self.root, free))

    def path_for(self, camera_id: str, start_utc: datetime) -> str:
        return segment_key(camera_id, start_utc)

    def exists(self, key: str) -> bool:
        return self._path(key).exists() or self._partial(key).exists()

    def open_write(self, key: str) -> io.RawIOBase:
        partial = self._partial(key)
        if self._path(key).exists():
            raise FileExistsError(f"{self._path(key)} already exists; a published segment is never overwritten")
        try:
            partial.parent.mkdir(parents=True, exist_ok=True)
            # "x": a key is written once; an existing partial is a crash's leftover for reconciliation.
            raw = partial.open("xb", buffering=0)
        except OSError as exc:
            if exc.errno in _DISK_FULL_ERRNOS:
                raise self._full(exc) from exc
            raise
        return _FootageWriter(raw, self._full)

    def finalize(self, key: str) -> int:
        partial, final = self._partial(key), self._path(key)
        try:
            with partial.open("rb") as f:
                os.fsync(f.fileno())
                size = os.fstat(f.fileno()).st_size
            if final.exists():
                raise FileExistsError(f"{final} already exists; a published segment is never overwritten")
            partial.rename(final)
            _fsync_dir(final.parent)
        except OSError as exc:
            if exc.errno in _DISK_FULL_ERRNOS:
                raise self._full(exc) from exc
            raise
        return size

    def abort(self, key: str) -> None:
        self._partial(key).unlink(missing_ok=True)

    def partial_keys(self, camera_id: str | None = None) -> Iterator[str]:
        for key in self._walk(camera_id, SEGMENT_SUFFIX + PARTIAL_SUFFIX):
            yield key.removesuffix(PARTIAL_SUFFIX)

    def open_partial(self, key: str) -> BinaryIO:
        return self._partial(key).open("r+b")

    def open_read(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink()
        # Empty hour and day directories go too, or a year leaves thousands behind.
        for parent in (path.parent, path.parent.parent):
            try:
                parent.rmdir()
            except OSError:
                break

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def iter_keys(self, camera_id: str | None = None) -> Iterator[str]:
        return self._walk(camera_id, SEGMENT_SUFFIX)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self._existing_root()).free

    def used_bytes(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.endswith((SEGMENT_SUFFIX, SEGMENT_SUFFIX + PARTIAL_SUFFIX)):
                    try:
                        total += os.stat(os.path.join(dirpath, name)).st_size
                    except FileNotFoundError:
                        continue  # deleted by retention meanwhile
        return total

    def _existing_root(self) -> Path:
        # Before the first recording the footage directory may not exist yet; its disk does.
        path = self.root
        while not path.exists() and path != path.parent:
            path = path.parent
        return path

    def _walk(self, camera_id: str | None, suffix: str) -> Iterator[str]:
        top = self.root / camera_id if camera_id is not None else self.root
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                if not name.endswith(suffix):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix().removesuffix(suffix) + SEGMENT_SUFFIX
                # Files outside the layout (copied in by hand, editor backups) are not footage keys.
                if KEY_PATTERN.fullmatch(key):
                    yield key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_key(store: FootageStore, camera_id: str, start_utc: datetime) -> str:
    """The layout's key for a new segment, with a "-N" suffix if that second is already taken."""
    for clash in range(MAX_KEY_CLASH + 1):
        key = store.path_for(camera_id, start_utc) if clash == 0 else segment_key(camera_id, start_utc, clash)
        if not store.exists(key):
            return key
    raise FileExistsError(
        f"{MAX_KEY_CLASH + 1} segments of camera {camera_id!r} start at {start_utc:%Y-%m-%d %H:%M:%S} UTC; "
        "the camera is reconnecting in a loop: check its network and settings"
    )
