"""What the camera pipeline publishes on the event bus (appliance/bus.py) for the alert
dispatcher and the console.

Small frozen dataclasses; times are aware UTC datetimes; ids are the events table's ids
(`event_id_for`). Every message is also in the database by the time it is published: the bus only
wakes subscribers up. JPEG bytes are left out of reprs, which end up in logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class EventOpened:
    """An event started. Carries its snapshot so the alert goes out at once, with a picture
    already in memory, instead of waiting for a file or a second query."""

    camera_id: str
    event_id: str
    kind: str
    """One of `EVENT_KINDS` (appliance/storage/models.py)."""
    start_utc: datetime
    armed: bool
    snapshot_jpeg: bytes | None = field(default=None, repr=False)
    thumbnail_jpeg: bytes | None = field(default=None, repr=False)
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    """The motion boxes of the frame that started the event (x0, y0, x1, y1 as frame fractions):
    the first alert names the zone from them."""


@dataclass(frozen=True)
class EventClosed:
    camera_id: str
    event_id: str
    kind: str
    start_utc: datetime
    end_utc: datetime
    reason: str


@dataclass(frozen=True)
class ClipReady:
    """The event's clip is published and recorded (hash in the events table and the evidence chain).

    `rendition_key` is the H.264 rendition of an H.265 clip, what alerts attach and browsers play;
    None for an H.264 clip (play `clip_key` itself) or when the rendition could not be made."""

    event_id: str
    camera_id: str
    clip_key: str
    rendition_key: str | None
    sha256: str


@dataclass(frozen=True)
class CameraOffline:
    camera_id: str
    event_id: str
    since_utc: datetime
    """When the last frame arrived."""


@dataclass(frozen=True)
class CameraOnline:
    camera_id: str
    event_id: str
    """The offline event this ends."""
    at_utc: datetime


@dataclass(frozen=True)
class TamperDetected:
    camera_id: str
    event_id: str
    kind: str
    """"tamper_covered", "tamper_defocus" or "tamper_scene_change"."""
    at_utc: datetime
    snapshot_jpeg: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TamperCleared:
    camera_id: str
    event_id: str
    kind: str
    at_utc: datetime


# ---------------------------------------------------------------------------------- retention ---
# Published by the retention runner (appliance/cameras/retention_runner.py) on every sweep while
# the condition lasts: alert rules debounce them.


@dataclass(frozen=True)
class RetentionShortened:
    """Footage of the camera was deleted before its keep days to make room on the disk."""

    camera_id: str
    oldest_kept_utc: datetime
    """Footage before this moment is gone (legal holds aside): the end of the newest segment (or clip) deleted."""
    freed_bytes: int
    reason: str
    """"quota" (footage exceeded the disk quota) or "free_space" (the disk fell below its minimum free space)."""


@dataclass(frozen=True)
class DiskNearlyFull:
    """The disk limits could not be met: the footage left is protected (legal holds, the segments
    being recorded, each camera's newest) or not in the index."""

    free_bytes: int
    missing_bytes: int
    """How much more would have to be deleted."""


# --------------------------------------------------------------------------- end of retention ---
