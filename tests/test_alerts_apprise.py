"""The apprise channel against real peers: an in-process SMTP server (aiosmtpd) for `mailto://`, and a
local aiohttp server as apprise's `json://` endpoint, answering as a service that is fine, refuses
the token, is overloaded, rate-limits, or is not there at all."""

from __future__ import annotations

import asyncio
import base64
import email
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.smtp import SMTP, Envelope, Session

from appliance.alerts.channel import Alert, DeliveryError
from appliance.alerts.channels import ChannelContext
from appliance.alerts.channels.apprise_channel import (
    NO_OWN_LIMIT,
    RATE_LIMITED_WAIT_S,
    AppriseChannel,
    classify,
    create,
)
from appliance.alerts.settings import ChannelSettings
from tests.gst_peer import free_port
from tests.web_support import make_config

T0 = datetime(2026, 11, 27, 20, 15, 3, tzinfo=UTC)
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(3000)
MP4 = b"\x00\x00\x00\x18ftypisom" + os.urandom(20000)
TOKEN = "s3cr3t-T0ken-value"


def _alert(**overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "alert_id": "17",
        "kind": "motion",
        "part": "clip",
        "title": "Движение: «Касса»",
        "body": "28.11.2026 01:15:03 · зона «прилавок»",
        "occurred_utc": T0,
        "camera_id": "kassa",
        "camera_name": "Касса",
        "event_id": "kassa-20261127T201503",
        "link": "https://shop.example.org/events/kassa-20261127T201503",
        "snapshot_jpeg": JPEG,
        "clip_mp4": MP4,
        "clip_name": "kassa-20261127T201503.mp4",
    }
    values.update(overrides)
    return Alert(**values)


# -------------------------------------------------------------------------------- e-mail ---


@dataclass
class Mailbox:
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(mailbox, hostname="mail.test"), "127.0.0.1", 0)
    try:
        yield mailbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_email_carries_the_snapshot_and_the_clip(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    url = f"mailto://127.0.0.1:{port}?from=appliance@shop.example&to=owner@shop.example&mode=insecure"
    channel = AppriseChannel("mail", url)
    await channel.send(_alert())

    [envelope] = mailbox.envelopes
    assert envelope.rcpt_tos == ["owner@shop.example"]
    assert isinstance(envelope.original_content, bytes)
    message = email.message_from_bytes(envelope.original_content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Движение: «Касса»"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "зона «прилавок»" in text and "https://shop.example.org/events/kassa-20261127T201503" in text
    attached = {
        part.get_filename(): (part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_attachments()
    }
    assert attached == {
        "kassa-20261127T201503.jpg": ("image/jpeg", JPEG),
        "kassa-20261127T201503.mp4": ("video/mp4", MP4),
    }


async def test_email_without_a_reachable_server_is_an_outage(smtp: tuple[Mailbox, int]) -> None:
    closed_port = free_port()
    channel = AppriseChannel(
        "mail", f"mailto://127.0.0.1:{closed_port}?from=a@shop.example&to=o@shop.example&mode=insecure"
    )
    with pytest.raises(DeliveryError) as caught:
        await channel.send(_alert(clip_mp4=None, clip_name=None))
    assert not caught.value.permanent and "127.0.0.1" in caught.value.provider_message


# --------------------------------------------------------------------- a json:// service ---


class Service:
    """A local HTTP endpoint standing in for the owner's notification service."""

    def __init__(self, port: int | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/hook", self._hook)
        self.server = TestServer(app, host="127.0.0.1", port=port)

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append({"auth": request.headers.get("Authorization"), **await request.json()})
        return web.Response(status=self.status, text="denied" if self.status >= 400 else "ok")

    @property
    def url(self) -> str:
        return f"json://owner:{TOKEN}@127.0.0.1:{self.server.port}/hook"


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    s = Service()
    await s.server.start_server()
    try:
        yield s
    finally:
        await s.server.close()


async def test_json_service_gets_texts_link_and_attachments(service: Service) -> None:
    await AppriseChannel("hook", service.url).send(_alert())
    [got] = service.received
    assert got["auth"] == "Basic " + base64.b64encode(f"owner:{TOKEN}".encode()).decode()
    assert got["title"] == "Движение: «Касса»"
    assert got["message"].endswith("\nhttps://shop.example.org/events/kassa-20261127T201503")
    files = {a["filename"]: (a["mimetype"], base64.b64decode(a["base64"])) for a in got["attachments"]}
    assert files == {
        "kassa-20261127T201503.jpg": ("image/jpeg", JPEG),
        "kassa-20261127T201503.mp4": ("video/mp4", MP4),
    }


async def test_a_notice_without_footage_goes_without_attachments(service: Service) -> None:
    notice = _alert(
        kind="disk_nearly_full", part="notice", snapshot_jpeg=None, clip_mp4=None, clip_name=None, link=None
    )
    await AppriseChannel("hook", service.url).send(notice)
    [got] = service.received
    assert got["attachments"] == [] and got["message"] == notice.body


@pytest.mark.parametrize(
    ("status", "permanent", "retry_after_s"),
    [(401, True, None), (403, True, None), (404, True, None), (503, False, None), (429, False, RATE_LIMITED_WAIT_S)],
)
async def test_service_answers_decide_whether_to_retry(
    service: Service, status: int, permanent: bool, retry_after_s: float | None
) -> None:
    service.status = status
    with pytest.raises(DeliveryError) as caught:
        await AppriseChannel("hook", service.url).send(_alert())
    assert (caught.value.permanent, caught.value.retry_after_s) == (permanent, retry_after_s)
    assert f"error={status}" in caught.value.provider_message
    assert TOKEN not in caught.value.provider_message


async def test_service_down_is_an_outage_and_back_up_delivers(service: Service) -> None:
    channel = AppriseChannel("hook", service.url)
    port = service.server.port
    await service.server.close()
    with pytest.raises(DeliveryError) as caught:
        await channel.send(_alert())
    assert not caught.value.permanent and "Connection error" in caught.value.provider_message

    again = Service(port)
    await again.server.start_server()
    try:
        await channel.send(_alert())
    finally:
        await again.server.close()
    assert len(again.received) == 1


async def test_channels_sending_at_once_read_only_their_own_errors(service: Service) -> None:
    refusing = Service()
    refusing.status = 401
    await refusing.server.start_server()
    service.status = 503
    try:
        results = await asyncio.gather(
            *(AppriseChannel(f"c{i}", s.url).send(_alert()) for i in range(6) for s in (refusing, service)),
            return_exceptions=True,
        )
    finally:
        await refusing.server.close()
    assert all(isinstance(r, DeliveryError) for r in results)
    assert [r.permanent for r in results if isinstance(r, DeliveryError)] == [True, False] * 6
    assert all(("error=401" in r.provider_message) == r.permanent for r in results if isinstance(r, DeliveryError))


# ---------------------------------------------------------------------------- set-up ---


@pytest.mark.parametrize("url", ["nosuchservice://x/y", f"tgram://{TOKEN}/", "mailto://"])
def test_unusable_url_is_a_config_error_naming_the_channel(url: str) -> None:
    with pytest.raises(ValueError, match=r"alerts channel 'owner-phone': the apprise URL") as caught:
        AppriseChannel("owner-phone", url)
    assert TOKEN not in str(caught.value)
    assert url.split("://")[0] + "://" in str(caught.value)


def test_attachment_limit_follows_the_service() -> None:
    assert AppriseChannel("a", "json://127.0.0.1/hook").max_attachment_bytes == NO_OWN_LIMIT
    pushover = AppriseChannel("b", "pover://" + "u" * 30 + "@" + "t" * 30)
    assert pushover.max_attachment_bytes == 5 * 1024 * 1024
    # Gotify takes no attachments: the composer sends the link instead of the clip.
    assert AppriseChannel("c", "gotify://gotify.example/" + "a" * 16).max_attachment_bytes == 0


def test_created_from_its_settings(tmp_path: Path, service: Service) -> None:
    settings = ChannelSettings(id="telegram", kind="apprise", url=service.url)
    channel = create(ChannelContext(settings, make_config(tmp_path), None, tmp_path))  # type: ignore[arg-type]
    assert channel.id == "telegram"


def test_classify_masks_secrets_and_reads_the_status() -> None:
    error = classify([f"Failed to send to tgram://{TOKEN}/123: Unauthorized, error=401."], (TOKEN,))
    assert error.permanent and TOKEN not in error.provider_message and "error=401" in error.provider_message
    assert not classify(["Request Timeout, error=408."], ()).permanent
    assert not classify([], ()).permanent
    assert classify([], ()).provider_message == "the service did not accept the alert"
