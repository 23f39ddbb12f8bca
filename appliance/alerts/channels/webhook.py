"""A signed webhook: the alert as JSON POSTed to the owner's (or an integrator's) URL.

Signature, as Stripe and GitHub do it, so a receiver can check the sender and refuse replays:

    X-Appliance-Timestamp: <unix seconds>
    X-Appliance-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
    X-Appliance-Alert-Id:  <the outbox id; the same on every retry of this alert>

The receiver recomputes the HMAC over the raw body with `hmac.compare_digest` and refuses
timestamps more than a few minutes old. Answers: 2xx delivered; 429 and 503 wait for Retry-After;
other 5xx, 408, timeouts and network errors are tried again; other 4xx and redirects are refused
for good (the URL or the secret must be fixed), with the receiver's words kept for the console.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import time
from functools import partial
from typing import Any, Final

import aiohttp

from appliance import __version__
from appliance.alerts.channel import Alert, DeliveryError
from appliance.alerts.channels import ChannelContext
from appliance.alerts.channels.http_errors import retry_after_s
from appliance.redact import mask_text

SIGNATURE_HEADER: Final = "X-Appliance-Signature"
TIMESTAMP_HEADER: Final = "X-Appliance-Timestamp"
ALERT_ID_HEADER: Final = "X-Appliance-Alert-Id"
PROVIDER_TEXT_CHARS: Final = 300
"""How much of the receiver's answer is kept as the failure's explanation."""
TRANSIENT_4XX: Final = frozenset({408, 425, 429})


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (and the tests): constant-time comparison of the signature."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def alert_json(alert: Alert) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": alert.alert_id,
        "kind": alert.kind,
        "part": alert.part,
        "title": alert.title,
        "body": alert.body,
        "occurred_utc": alert.occurred_utc.isoformat(),
        "camera": {"id": alert.camera_id, "name": alert.camera_name} if alert.camera_id else None,
        "event_id": alert.event_id,
        "link": alert.link,
        "data": alert.data,
    }
    if alert.snapshot_jpeg is not None:
        doc["snapshot_jpeg_base64"] = base64.b64encode(alert.snapshot_jpeg).decode()
    if alert.clip_mp4 is not None:
        doc["clip"] = {"name": alert.clip_name, "mp4_base64": base64.b64encode(alert.clip_mp4).decode()}
    return doc


def _encode(alert: Alert) -> bytes:
    return json.dumps(alert_json(alert), ensure_ascii=False).encode()


class WebhookChannel:
    def __init__(self, channel_id: str, url: str, secret: str, max_attachment_bytes: int) -> None:
        self.id = channel_id
        self.max_attachment_bytes = max_attachment_bytes
        self._url = url
        self._secret = secret.encode()
        self._secrets = (url, secret)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, alert: Alert) -> None:
        # A clip makes megabytes of JSON: encoded off the event loop.
        encode = partial(_encode, alert)
        body = await asyncio.to_thread(encode) if alert.clip_mp4 is not None else encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"store-appliance/{__version__}",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            ALERT_ID_HEADER: alert.alert_id,
        }
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            post = self._session.post(self._url, data=io.BytesIO(body), headers=headers, allow_redirects=False)
            async with post as resp:
                if resp.status < 300:
                    return
                text = (await resp.text(errors="replace")).strip()[:PROVIDER_TEXT_CHARS]
                retry = retry_after_s(resp.headers.get("Retry-After"))
                status = resp.status
                reason = resp.reason or ""
                location = resp.headers.get("Location", "")
        except aiohttp.ClientError as exc:
            raise DeliveryError(self._mask(f"cannot reach the webhook: {type(exc).__name__}: {exc}")) from None
        except OSError as exc:
            raise DeliveryError(self._mask(f"cannot reach the webhook: {exc}")) from None
        said = f"HTTP {status} {reason}" + (f": {text}" if text else "")
        if 300 <= status < 400:
            raise DeliveryError(
                self._mask(f"{said}; the webhook moved to {location or 'another address'}: update the channel's url"),
                permanent=True,
            )
        if status >= 500 or status in TRANSIENT_4XX:
            raise DeliveryError(self._mask(said), retry_after_s=retry)
        raise DeliveryError(self._mask(said), permanent=True)

    def _mask(self, text: str) -> str:
        return mask_text(text, self._secrets)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def create(ctx: ChannelContext) -> WebhookChannel:
    s = ctx.settings
    if s.url is None or s.secret is None:  # the settings' validation makes this impossible
        raise ValueError(f"alerts channel {s.id!r}: a webhook needs url and secret")
    return WebhookChannel(s.id, s.url.get_secret_value(), s.secret.get_secret_value(), s.max_clip_bytes)
