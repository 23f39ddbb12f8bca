"""Web Push to the console installed on the owner's phones (pywebpush: VAPID, aes128gcm).

Each subscribed browser gets a small encrypted JSON message; its service worker
(console/static/push-sw.js) shows the notification and opens the event when it is tapped.
The push service's answer decides what happens to a phone: 404/410 means the browser dropped
the subscription, so its row is removed; other 4xx are kept and shown on the Push page; 429,
5xx and network errors are retried by the dispatcher. Phones that already have an alert are
not sent it again when the dispatcher retries it for the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote, urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec
from pywebpush import WebPushException, webpush_async

from appliance.alerts.channel import Alert, DeliveryError
from appliance.alerts.channels.http_errors import retry_after_s
from appliance.alerts.push_console import push_console_feature
from appliance.alerts.settings import AlertsSection
from appliance.alerts.vapid import load_or_create_vapid_key, vapid_signer
from appliance.console.features import ConsoleFeature
from appliance.storage.models_webpush import WebPushSubscription
from appliance.storage.webpush import PushSubscriptionStore

if TYPE_CHECKING:
    from appliance.alerts.channels import ChannelContext

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES: Final = 3000
"""Push services take 4096 encrypted bytes; aes128gcm adds 103 and JSON escaping varies, so stay well below."""
TTL_S: Final = 12 * 3600
"""How long a push service keeps an alert for a phone that is off: an alert half a day old still matters."""
REMEMBERED_ALERTS: Final = 1000
"""Alerts whose delivered phones are remembered, so a retry skips them (a few hours of a busy shop)."""
DEFAULT_SUBJECT: Final = "mailto:appliance@localhost"
"""VAPID `sub` without `alerts.vapid_contact` or an https console address: push services want a mailto: or
https: contact."""
PROVIDER_TEXT_MAX: Final = 200

Outcome = Literal["ok", "gone", "refused", "later"]


@dataclass(frozen=True)
class PushResult:
    outcome: Outcome
    message: str = ""
    retry_after_s: float | None = None


def push_payload(alert: Alert) -> bytes:
    """What the service worker reads: texts, where a tap leads, the event (the notification's tag, so that
    the clip follow-up replaces the snapshot alert on the phone) and where its snapshot is."""
    doc: dict[str, Any] = {
        "title": alert.title,
        "body": alert.body,
        "url": alert.link or "/",
        "event_id": alert.event_id,
        "alert_id": alert.alert_id,
        "tag": alert.event_id or alert.alert_id,
        "time": alert.occurred_utc.isoformat(),
    }
    if alert.event_id is not None and alert.snapshot_jpeg is not None:
        # The picture is too big for a push message: the notification shows it from the console, where the
        # phone is signed in (the browser fetches it with the console's cookie; signed out, it shows none).
        doc["image"] = f"/events/{quote(alert.event_id, safe='')}/snapshot.jpg"
    data = json.dumps(doc, ensure_ascii=False).encode()
    while len(data) > MAX_PAYLOAD_BYTES:
        over = len(data) - MAX_PAYLOAD_BYTES
        doc["body"] = doc["body"][: max(0, len(doc["body"]) - over - 1)] + "…"
        data = json.dumps(doc, ensure_ascii=False).encode()
    return data


def _origin(endpoint: str) -> str:
    """The push service, named without the subscription's path (a capability URL)."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def classify(endpoint: str, status: int | None, text: str, retry_after: str | None) -> PushResult:
    """The push service's answer (None: no answer at all) as what to do about this phone."""
    where = _origin(endpoint)
    detail = " ".join(text.split())[:PROVIDER_TEXT_MAX]
    if status is None:
        return PushResult("later", f"{where}: {detail or 'no answer'}")
    message = f"{where}: HTTP {status}" + (f" {detail}" if detail else "")
    if status in (404, 410):
        return PushResult("gone", message)
    if status == 429:
        return PushResult("later", message, retry_after_s(retry_after))
    if 400 <= status < 500:
        return PushResult("refused", message)
    return PushResult("later", message, retry_after_s(retry_after))


class WebPushChannel:
    max_attachment_bytes = 0
    """Nothing is attached: a push message holds a few kilobytes; the notification links to the event."""

    def __init__(
        self,
        channel_id: str,
        store: PushSubscriptionStore,
        vapid_key: ec.EllipticCurvePrivateKey,
        *,
        language: str | None = None,
        subject: str = DEFAULT_SUBJECT,
        timeout_s: float = 30.0,
    ) -> None:
        self.id = channel_id
        self._store = store
        self._vapid_key = vapid_key
        self._signer = vapid_signer(vapid_key)
        self._language = language
        self._subject = subject
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._delivered: OrderedDict[str, set[int]] = OrderedDict()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _delivered_to(self, alert_id: str) -> set[int]:
        done = self._delivered.setdefault(alert_id, set())
        self._delivered.move_to_end(alert_id)
        while len(self._delivered) > REMEMBERED_ALERTS:
            self._delivered.popitem(last=False)
        return done

    async def _push(self, sub: WebPushSubscription, payload: bytes) -> PushResult:
        info: dict[str, str | bytes | dict[str, str | bytes]] = {
            "endpoint": sub.endpoint,
            "keys": {"p256dh": sub.p256dh, "auth": sub.auth},
        }
        try:
            await webpush_async(
                info,
                payload.decode(),
                vapid_private_key=self._signer,
                # pywebpush fills in `aud` (the endpoint's origin) and `exp` in the dict it is given.
                vapid_claims={"sub": self._subject},
                ttl=TTL_S,
                headers={"Urgency": "high"},
                aiohttp_session=self._http(),
            )
        except WebPushException as exc:
            response = exc.response
            text = await response.text() if isinstance(response, aiohttp.ClientResponse) else ""
            return classify(sub.endpoint, exc.status_code, text, exc.retry_after)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return classify(sub.endpoint, None, f"{type(exc).__name__}: {exc}", None)
        return PushResult("ok")

    async def send(self, alert: Alert) -> None:
        subs = await self._store.list(self._language)
        if not subs:
            raise DeliveryError(
                "no phone receives these alerts: open the console on the phone, go to 'Push on this phone' "
                "and turn alerts on",
                permanent=True,
            )
        done = self._delivered_to(alert.alert_id)
        pending = [s for s in subs if s.id not in done]
        payload = push_payload(alert)
        results = await asyncio.gather(*(self._push(s, payload) for s in pending))

        now = datetime.now(UTC)
        ok = [s.id for s, r in zip(pending, results, strict=True) if r.outcome == "ok"]
        done.update(ok)
        await self._store.delivered(ok, now)
        for sub, result in zip(pending, results, strict=True):
            if result.outcome == "gone":
                log.info("web push subscription gone; removed", extra={"channel": self.id, "subscription": sub.id})
                await self._store.remove(sub.id)
            elif result.outcome != "ok":
                await self._store.failed(sub.id, result.message, now)

        later = [r for r in results if r.outcome == "later"]
        if later:
            waits = [r.retry_after_s for r in later if r.retry_after_s is not None]
            raise DeliveryError(
                f"{len(later)} of {len(subs)} phones not reached yet ({later[0].message})",
                retry_after_s=max(waits) if waits else None,
            )
        if not done:
            failed = [r for r in results if r.outcome != "ok"]
            raise DeliveryError(
                f"no phone accepted the alert ({failed[0].message}); turn alerts on again on the phone's "
                "'Push on this phone' page",
                permanent=True,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def console_feature(self) -> ConsoleFeature:
        """The "Push on this phone" page where staff subscribe their phones (one page for all webpush channels:
        the feature is named "push")."""
        return push_console_feature(self._store, self._vapid_key, channel_configured=True)


def vapid_subject(section: AlertsSection) -> str:
    """Push services want a way to reach the sender: the configured contact, else the console's https
    address when there is one."""
    if section.vapid_contact:
        return section.vapid_contact
    return section.console_url if section.console_url.startswith("https://") else DEFAULT_SUBJECT


def create(ctx: ChannelContext) -> WebPushChannel:
    return WebPushChannel(
        ctx.settings.id,
        PushSubscriptionStore(ctx.sessions),
        load_or_create_vapid_key(ctx.data_dir),
        language=ctx.settings.language,
        subject=vapid_subject(ctx.cfg.alerts),
        # Below the dispatcher's limit, so that a slow push service ends as this phone's failure, with its bookkeeping.
        timeout_s=ctx.cfg.alerts.send_timeout_s * 0.8,
    )
