"""The demo phone: where `appliance demo` sends what a store would send to phones, shown in the
console's demo inbox.

One HTTP server on 127.0.0.1 takes two real deliveries:
- the owner's alerts: the demo configures a webhook channel ("demo-phone") pointing here, so
  every alert goes through the outbox and the dispatcher as in a store, signed as every webhook
  is; this receiver checks the signature as any receiver should and shows the alert with its
  snapshot and clip;
- the guests' SMS: the portal's SMS.ru client sends codes to the demo SMS provider
  (demo_sms.py) mounted here, and each message shows as "SMS на +7 916 123-45-67".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from appliance.alerts.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from appliance.alerts.inbox import DemoInbox
from appliance.demo_sms import DemoSmsRu
from appliance.portal.phones import shown

WEBHOOK_PATH: Final = "/webhook"
CHANNEL_ID: Final = "demo-phone"
MAX_CLIP_BYTES: Final = 4 * 1024 * 1024
"""The demo channel's largest attached clip: the inbox keeps clips in memory. A 10 s demo clip is far smaller."""
MAX_BODY_BYTES: Final = 8 * MAX_CLIP_BYTES
"""A clip and a snapshot as base64 in JSON, with room to spare."""
TIMESTAMP_TOLERANCE_S: Final = 300.0
"""Signed requests older (or newer) than this are refused, as a receiver refuses replays."""


@dataclass(frozen=True)
class PhoneKeys:
    """Where the demo phone listens and the secrets the appliance's settings share with it."""

    port: int
    webhook_secret: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    sms_api_id: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alerts_channel(self) -> dict[str, Any]:
        """The `[[alerts.channels]]` table that sends the owner's alerts here."""
        return {
            "id": CHANNEL_ID,
            "kind": "webhook",
            "url": self.url + WEBHOOK_PATH,
            "secret": self.webhook_secret,
            "max_clip_bytes": MAX_CLIP_BYTES,
        }

    def sms_provider(self) -> dict[str, Any]:
        """The `[portal.sms]` section that sends the guests' codes here."""
        return {"provider": "smsru", "api_key": self.sms_api_id, "base_url": self.url}


class BadAlert(ValueError):
    pass


def _decoded(value: object, what: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadAlert(f"{what} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise BadAlert(f"{what} is not valid base64") from None


def alert_message(body: bytes) -> tuple[str, str, bytes | None, bytes | None]:
    """Title, text, snapshot and clip of a webhook alert (appliance/alerts/channels/webhook.py)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadAlert("the body is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("title"), str) or not isinstance(doc.get("body"), str):
        raise BadAlert("the alert has no title or body")
    clip = doc.get("clip")
    return (
        doc["title"],
        doc["body"],
        _decoded(doc.get("snapshot_jpeg_base64"), "snapshot_jpeg_base64"),
        _decoded(clip.get("mp4_base64") if isinstance(clip, dict) else None, "clip.mp4_base64"),
    )


class DemoPhone:
    def __init__(self, inbox: DemoInbox, keys: PhoneKeys) -> None:
        self.inbox = inbox
        self.keys = keys
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(WEBHOOK_PATH, self._webhook)
        app.router.add_routes(DemoSmsRu(self.keys.sms_api_id, self._sms).routes())
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.keys.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= TIMESTAMP_TOLERANCE_S
        if not fresh or not verify(self.keys.webhook_secret.encode(), timestamp, body, signature):
            return web.Response(status=401, text="the signature does not match the demo phone's secret, or is stale")
        try:
            # A clip makes megabytes of base64: decoded off the event loop.
            title, text, image, clip = await asyncio.to_thread(alert_message, body)
        except BadAlert as exc:
            return web.Response(status=400, text=f"not an appliance alert: {exc}")
        self.inbox.add(title, text, datetime.now(UTC), image, clip)
        return web.Response(status=204)

    def _sms(self, to: str, text: str) -> None:
        self.inbox.add(f"SMS на {shown(to)}", text, datetime.now(UTC))
