"""What a delivery channel (apprise, MQTT, Web Push, webhook) is to the alert dispatcher.

The dispatcher owns retries, ordering and idempotency; a channel only tries one delivery and
says how it went: returning means delivered, `DeliveryError` says whether trying again can help.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

AlertPart = Literal["snapshot", "clip", "notice"]
"""snapshot: the first alert of an event, sent at once with the JPEG in memory; clip: the
follow-up when the event's clip is finalised; notice: alerts without footage (camera offline,
disk nearly full, SMS budget reached, test alerts)."""


@dataclass(frozen=True)
class Alert:
    """One alert as a channel sends it: texts already in the recipient's language."""

    alert_id: str
    """Stable idempotency key (outbox row id): the same alert retried keeps it."""
    kind: str
    """motion, camera_offline, camera_online, tamper_covered, tamper_defocus, tamper_scene_change,
    retention_shortened, disk_nearly_full, sms_budget_reached or test."""
    part: AlertPart
    title: str
    body: str
    occurred_utc: datetime
    camera_id: str | None = None
    camera_name: str | None = None
    event_id: str | None = None
    link: str | None = None
    """Deep link to the event in the console (absent when no console URL is configured)."""
    snapshot_jpeg: bytes | None = field(default=None, repr=False)
    clip_mp4: bytes | None = field(default=None, repr=False)
    clip_name: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    """Machine-readable payload (JSON-safe) for MQTT and webhooks."""


class DeliveryError(Exception):
    """A delivery that did not happen.

    `permanent`: trying again cannot help (bad token, 4xx other than 429): the dispatcher stops
    and shows `provider_message` in the console. Otherwise it retries with backoff, no sooner
    than `retry_after_s` when the provider said so (429 / Retry-After).
    """

    def __init__(self, provider_message: str, *, permanent: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(provider_message)
        self.provider_message = provider_message
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class Channel(Protocol):
    id: str
    max_attachment_bytes: int
    """Attachments above this are not sent: the channel gets the snapshot and the link instead."""

    async def send(self, alert: Alert) -> None:
        """Deliver once or raise DeliveryError. Never logs secrets (tokens are in URLs)."""
        ...

    async def close(self) -> None: ...
