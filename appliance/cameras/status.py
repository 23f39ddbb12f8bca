"""What the appliance knows about each camera right now, for the console, `/metrics` and STATUS=."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum


class CameraState(StrEnum):
    STARTING = "starting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    AUTH_FAILED = "auth_failed"
    NOT_FOUND = "not_found"
    DISABLED = "disabled"


@dataclass(frozen=True)
class CameraStatus:
    camera_id: str
    name: str
    state: CameraState = CameraState.STARTING
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_error: str | None = None
    fps: float = 0.0
    bitrate_kbps: float = 0.0
    width: int | None = None
    height: int | None = None
    codec: str | None = None


class StatusBoard:
    """Latest status per camera. Written by ingest tasks, read by the web apps; single event loop."""

    def __init__(self) -> None:
        self._items: dict[str, CameraStatus] = {}
        self._listeners: list[Callable[[CameraStatus], None]] = []

    def on_state_change(self, listener: Callable[[CameraStatus], None]) -> None:
        """Call `listener` with the new status whenever a camera changes state."""
        self._listeners.append(listener)

    def register(self, camera_id: str, name: str, enabled: bool = True) -> None:
        state = CameraState.STARTING if enabled else CameraState.DISABLED
        self._items[camera_id] = CameraStatus(camera_id, name, state)

    def update(self, camera_id: str, **changes: object) -> CameraStatus:
        old = self._items[camera_id]
        if "state" in changes and changes["state"] != old.state:
            changes.setdefault("since", datetime.now(UTC))
        new = replace(old, **changes)  # type: ignore[arg-type]
        self._items[camera_id] = new
        if new.state != old.state:
            for listener in self._listeners:
                listener(new)
        return new

    def get(self, camera_id: str) -> CameraStatus:
        return self._items[camera_id]

    def all(self) -> list[CameraStatus]:
        return list(self._items.values())

    def summary(self) -> str:
        """One line for systemd's STATUS=."""
        items = self.all()
        online = sum(1 for s in items if s.state is CameraState.ONLINE)
        return f"{online}/{len(items)} cameras online"
