"""The signed webhook channel against a real HTTP server: signature, answers, failures."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from appliance.alerts.channel import Alert, DeliveryError
from appliance.alerts.channels.http_errors import retry_after_s
from appliance.alerts.channels.webhook import WebhookChannel
from tests.alerts_support import SECRET, WebhookReceiver, signed_correctly, webhook_receiver
from tests.gst_peer import free_port

AT = datetime(2026, 11, 27, 20, 15, 3, tzinfo=UTC)
JPEG = b"\xff\xd8\xff\xe0jpeg"


def alert(**kw: object) -> Alert:
    fields: dict[str, object] = {
        "alert_id": "42",
        "kind": "motion",
        "part": "snapshot",
        "title": "Движение: Касса",
        "body": "Касса: движение в 23:15:03.",
        "occurred_utc": AT,
        "camera_id": "kassa",
        "camera_name": "Касса",
        "event_id": "kassa-20261127T201503.000Z",
        "link": "https://shop.example.org/events/kassa-20261127T201503.000Z",
        "snapshot_jpeg": JPEG,
        "data": {"more_events": 2},
        **kw,
    }
    return Alert(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver() as r:
        yield r


@pytest.fixture
async def channel(receiver: WebhookReceiver) -> AsyncIterator[WebhookChannel]:
    ch = WebhookChannel("hook", receiver.url, SECRET, 8 * 1024 * 1024)
    yield ch
    await ch.close()


async def test_the_alert_arrives_as_signed_json(receiver: WebhookReceiver, channel: WebhookChannel) -> None:
    await channel.send(alert(part="clip", clip_mp4=b"\x00\x00\x00\x18ftypmp42", clip_name="e.mp4"))
    (got,) = receiver.received
    assert signed_correctly(got)
    assert not signed_correctly(got, secret="another-secret-0123456789")
    # What a receiver computes by hand from the documented scheme.
    ts = got.headers["X-Appliance-Timestamp"]
    expected = hmac.new(SECRET.encode(), ts.encode() + b"." + got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Appliance-Signature"] == f"sha256={expected}"
    assert abs(int(ts) - datetime.now(UTC).timestamp()) < 60
    doc = got.doc
    assert (doc["id"], doc["kind"], doc["part"], doc["title"]) == ("42", "motion", "clip", "Движение: Касса")
    assert doc["camera"] == {"id": "kassa", "name": "Касса"} and doc["data"] == {"more_events": 2}
    assert doc["occurred_utc"] == "2026-11-27T20:15:03+00:00"
    assert base64.b64decode(doc["snapshot_jpeg_base64"]) == JPEG
    assert base64.b64decode(doc["clip"]["mp4_base64"]).startswith(b"\x00\x00\x00\x18ftyp")
    assert got.headers["X-Appliance-Alert-Id"] == "42"


async def test_a_refusal_is_permanent_with_the_receivers_words(
    receiver: WebhookReceiver, channel: WebhookChannel
) -> None:
    receiver.answer = (401, {})
    with pytest.raises(DeliveryError) as err:
        await channel.send(alert())
    assert err.value.permanent
    assert err.value.provider_message == "HTTP 401 Unauthorized: Unauthorized: bad token"
    receiver.answer = (302, {"Location": "https://elsewhere.example/hook"})
    with pytest.raises(DeliveryError) as err:
        await channel.send(alert())
    assert err.value.permanent and "moved to https://elsewhere.example/hook" in err.value.provider_message


async def test_busy_and_down_receivers_are_tried_again(receiver: WebhookReceiver, channel: WebhookChannel) -> None:
    receiver.answer = (429, {"Retry-After": "7"})
    with pytest.raises(DeliveryError) as err:
        await channel.send(alert())
    assert not err.value.permanent and err.value.retry_after_s == 7.0
    receiver.answer = (503, {})
    with pytest.raises(DeliveryError) as err:
        await channel.send(alert())
    assert not err.value.permanent and err.value.retry_after_s is None
    assert err.value.provider_message.startswith("HTTP 503 Service Unavailable")
    assert receiver.received == []


async def test_an_unreachable_receiver_is_transient_and_its_secrets_stay_hidden() -> None:
    url = f"http://user:hunter22pw@127.0.0.1:{free_port()}/hook?token=s3cr3t-token-value"
    ch = WebhookChannel("hook", url, SECRET, 1024)
    try:
        with pytest.raises(DeliveryError) as err:
            await ch.send(alert())
    finally:
        await ch.close()
    assert not err.value.permanent
    message = err.value.provider_message
    assert message.startswith("cannot reach the webhook")
    assert "hunter22pw" not in message and "s3cr3t-token-value" not in message


def test_retry_after_as_seconds_or_a_date() -> None:
    now = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    assert retry_after_s("120") == 120.0
    assert retry_after_s(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert retry_after_s(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None
