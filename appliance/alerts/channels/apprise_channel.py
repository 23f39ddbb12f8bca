"""apprise: the owner pastes the URL of the service they already use (tgram://, ntfys://, pover://,
mailtos://, gotify://, json://, ...) and alerts go there, with the snapshot and the clip attached.

apprise is blocking, so each send runs in a worker thread. It answers only "sent or not"; why
it failed is in what it logs, so every call collects the apprise log records made on its behalf
and reads the HTTP status the service answered (`error=401`): 4xx other than 408 and 429 mean
trying again cannot help (a revoked token, a deleted chat), 429 means wait, anything else
(5xx, a refused connection, a timeout) is an outage that a retry outlives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Final

import apprise

from appliance.alerts.channel import Alert, DeliveryError
from appliance.redact import mask_text

if TYPE_CHECKING:
    from appliance.alerts.channels import ChannelContext

APPRISE_LOGGER: Final = "apprise"
HTTP_STATUS: Final = re.compile(r"\berror=(\d{3})\b")
TRANSIENT_4XX: Final = frozenset({408, 429})
RATE_LIMITED_WAIT_S: Final = 60.0
"""apprise does not pass a 429's Retry-After on; a minute is what most services ask for."""
NO_OWN_LIMIT: Final = 100 * 1024 * 1024
"""Attachment limit of a service that states none: the channel's max_clip_bytes decides."""
PROVIDER_TEXT_MAX: Final = 400

NOTIFY_TYPES: Final = {
    "camera_online": apprise.NotifyType.SUCCESS,
    "test": apprise.NotifyType.INFO,
}
"""Everything else is something the owner should look at."""

# The records of the call running in this context (apprise copies the context into its own worker
# threads), so that two channels sending at the same moment never read each other's errors.
_CALL_RECORDS: ContextVar[list[str] | None] = ContextVar("apprise_call_records", default=None)


class _CallRecords(logging.Handler):
    def __init__(self, records: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        if _CALL_RECORDS.get() is self.records:
            self.records.append(record.getMessage())


@contextlib.contextmanager
def apprise_messages() -> Iterator[list[str]]:
    """The warnings and errors apprise logs in this context while the block runs."""
    logger = logging.getLogger(APPRISE_LOGGER)
    # Records below the logger's level never reach a handler: a quiet root level must not hide them.
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    records: list[str] = []
    handler = _CallRecords(records)
    token = _CALL_RECORDS.set(records)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        _CALL_RECORDS.reset(token)


def classify(messages: list[str], secrets: tuple[str, ...]) -> DeliveryError:
    """What apprise logged about a failed call, as a DeliveryError with the service's words (masked)."""
    detail = mask_text(" ".join(messages), secrets)[:PROVIDER_TEXT_MAX] or "the service did not accept the alert"
    statuses = [int(s) for m in messages for s in HTTP_STATUS.findall(m)]
    if any(400 <= s < 500 and s not in TRANSIENT_4XX for s in statuses):
        return DeliveryError(detail, permanent=True)
    if 429 in statuses:
        return DeliveryError(detail, retry_after_s=RATE_LIMITED_WAIT_S)
    return DeliveryError(detail)


def message_body(alert: Alert) -> str:
    return f"{alert.body}\n{alert.link}" if alert.link else alert.body


class AppriseChannel:
    def __init__(self, channel_id: str, url: str, *, secrets: tuple[str, ...] = ()) -> None:
        self.id = channel_id
        self._secrets = (*secrets, url)
        # In memory: apprise's default on-disk cache is not wanted in a read-only system (systemd's ProtectSystem).
        asset = apprise.AppriseAsset(storage_mode=apprise.PersistentStoreMode.MEMORY)
        with apprise_messages() as messages:
            service = apprise.Apprise.instantiate(url, asset=asset)
        if service is None:
            why = mask_text(" ".join(messages), self._secrets) or "apprise does not know this kind of URL"
            # Only the scheme is shown: the rest of an apprise URL is often the token itself.
            scheme = url.partition("://")[0][:20]
            raise ValueError(
                f"alerts channel {channel_id!r}: the apprise URL {scheme}://… cannot be used ({why}); copy it "
                "again from the service (https://github.com/caronc/apprise/wiki lists every kind of URL)"
            )
        self._apprise = apprise.Apprise(asset=asset)
        self._apprise.add(service)
        self.max_attachment_bytes: int = (
            getattr(service, "attach_max_size_bytes", NO_OWN_LIMIT) if service.attachment_support else 0
        )

    def _notify(self, alert: Alert) -> tuple[bool, list[str]]:
        """Runs in a worker thread: the attachments go through temporary files, as apprise reads them."""
        with tempfile.TemporaryDirectory(prefix="appliance-alert-") as tmp, apprise_messages() as messages:
            files: list[str] = []
            for name, data in (
                (f"{alert.event_id or 'snapshot'}.jpg", alert.snapshot_jpeg),
                (alert.clip_name or "clip.mp4", alert.clip_mp4),
            ):
                if data is not None:
                    path = Path(tmp) / Path(name).name
                    path.write_bytes(data)
                    files.append(str(path))
            sent = self._apprise.notify(
                body=message_body(alert),
                title=alert.title,
                notify_type=NOTIFY_TYPES.get(alert.kind, apprise.NotifyType.WARNING),
                body_format=apprise.NotifyFormat.TEXT,
                attach=apprise.AppriseAttachment(files) if files else None,
            )
            return bool(sent), list(messages)

    async def send(self, alert: Alert) -> None:
        sent, messages = await asyncio.to_thread(self._notify, alert)
        if not sent:
            raise classify(messages, self._secrets)

    async def close(self) -> None:
        """Nothing is held open between sends."""


def create(ctx: ChannelContext) -> AppriseChannel:
    url = ctx.settings.url
    assert url is not None, "the settings refuse an apprise channel without a url"
    return AppriseChannel(ctx.settings.id, url.get_secret_value(), secrets=ctx.settings.secret_values())
