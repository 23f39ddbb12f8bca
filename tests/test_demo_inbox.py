"""The demo phone: the production webhook channel and SMS.ru client deliver to it, and what they
deliver shows in the demo inbox; what is not theirs (bad signature, wrong key) is refused."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from appliance.alerts.channel import Alert, DeliveryError
from appliance.alerts.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookChannel, sign
from appliance.alerts.inbox import DemoInbox
from appliance.demo_phone import MAX_CLIP_BYTES, WEBHOOK_PATH, DemoPhone, PhoneKeys
from appliance.portal.sms.base import SmsError
from appliance.portal.sms.factory import build_sms_sender
from appliance.portal.sms.settings import SmsSettings
from tests.gst_peer import free_port

JPEG = b"\xff\xd8\xff\xe0snapshot"
MP4 = b"\x00\x00\x00\x18ftypisom-clip"
CODE = "490536"
PHONE = "+79161234567"
NO_DIR = Path("/nonexistent")
"""The data folder only a Gammu spool would use."""
ALERT = Alert(
    alert_id="7",
    kind="motion",
    part="clip",
    title="Видео: Вход",
    body="Запись движения в 03:06:59.\nДемо-магазин",
    occurred_utc=datetime(2026, 11, 28, 0, 6, 59, tzinfo=UTC),
    camera_id="cam1",
    camera_name="Вход",
    snapshot_jpeg=JPEG,
    clip_mp4=MP4,
    clip_name="e.mp4",
)


@pytest.fixture
async def phone() -> AsyncIterator[DemoPhone]:
    phone = DemoPhone(DemoInbox(), PhoneKeys(free_port()))
    await phone.start()
    yield phone
    await phone.stop()


def webhook(phone: DemoPhone, secret: str | None = None) -> WebhookChannel:
    return WebhookChannel("demo-phone", phone.keys.url + WEBHOOK_PATH, secret or phone.keys.webhook_secret, 10**7)


def sms_settings(phone: DemoPhone, **overrides: str) -> SmsSettings:
    return SmsSettings.model_validate({**phone.keys.sms_provider(), **overrides})


async def test_a_signed_alert_shows_with_its_snapshot_and_clip(phone: DemoPhone) -> None:
    channel = webhook(phone)
    try:
        await channel.send(ALERT)
        await channel.send(
            replace(ALERT, alert_id="8", part="notice", title="Проверка", snapshot_jpeg=None, clip_mp4=None)
        )
    finally:
        await channel.close()
    notice, clip = phone.inbox.items()
    assert (clip.title, clip.body, clip.image, clip.clip) == (ALERT.title, ALERT.body, JPEG, MP4)
    assert (notice.title, notice.image, notice.clip) == ("Проверка", None, None)


async def test_an_alert_signed_with_another_key_is_refused_for_good(phone: DemoPhone) -> None:
    channel = webhook(phone, secret="not-the-demo-phones-secret")
    try:
        with pytest.raises(DeliveryError) as info:
            await channel.send(ALERT)
    finally:
        await channel.close()
    assert info.value.permanent and "HTTP 401" in info.value.provider_message
    assert phone.inbox.items() == []


async def post_signed(phone: DemoPhone, body: bytes, timestamp: int) -> int:
    headers = {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(phone.keys.webhook_secret.encode(), str(timestamp), body),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(phone.keys.url + WEBHOOK_PATH, data=body, headers=headers) as resp,
    ):
        return resp.status


async def test_stale_or_malformed_alerts_are_refused(phone: DemoPhone) -> None:
    good = json.dumps({"title": "Движение", "body": "Вход"}).encode()
    assert await post_signed(phone, good, int(time.time()) - 3600) == 401  # a replay an hour later
    assert await post_signed(phone, b"<html>not json</html>", int(time.time())) == 400
    no_title = json.dumps({"body": "Вход"}).encode()
    assert await post_signed(phone, no_title, int(time.time())) == 400
    bad_clip = json.dumps({"title": "Видео", "body": "Вход", "clip": {"mp4_base64": "%%%"}}).encode()
    assert await post_signed(phone, bad_clip, int(time.time())) == 400
    assert phone.inbox.items() == []
    assert await post_signed(phone, good, int(time.time())) == 204
    assert [i.title for i in phone.inbox.items()] == ["Движение"]


async def test_the_demo_channel_fits_a_clip_in_one_request(phone: DemoPhone) -> None:
    big = b"\x00\x00\x00\x18ftyp" + bytes(MAX_CLIP_BYTES - 8)
    channel = webhook(phone)
    try:
        await channel.send(replace(ALERT, clip_mp4=big))
    finally:
        await channel.close()
    assert phone.inbox.items()[0].clip == big


async def test_the_portal_sms_client_delivers_the_code_to_the_inbox(
    phone: DemoPhone, caplog: pytest.LogCaptureFixture
) -> None:
    sender = build_sms_sender(sms_settings(phone), NO_DIR)
    caplog.set_level(logging.DEBUG)
    try:
        sent = await sender.send(PHONE, f"Код для Wi-Fi: {CODE}. Никому не сообщайте.")
    finally:
        await sender.close()
    (item,) = phone.inbox.items()
    assert item.title == "SMS на +7 916 123-45-67"
    assert item.body == f"Код для Wi-Fi: {CODE}. Никому не сообщайте."
    assert sent.provider_id and sent.provider_id.startswith("demo-")
    assert CODE not in caplog.text


@pytest.mark.parametrize(
    ("overrides", "phone_number", "expected"),
    [
        ({"api_key": "another-key-0123456789"}, PHONE, "does not know the API key"),
        ({}, "+7916", "cannot send to this number"),
    ],
)
async def test_the_demo_provider_refuses_like_smsru(
    phone: DemoPhone, overrides: dict[str, str], phone_number: str, expected: str
) -> None:
    sender = build_sms_sender(sms_settings(phone, **overrides), NO_DIR)
    try:
        with pytest.raises(SmsError) as info:
            await sender.send(phone_number, f"Код для Wi-Fi: {CODE}.")
    finally:
        await sender.close()
    assert info.value.permanent and expected in str(info.value) and CODE not in str(info.value)
    assert phone.inbox.items() == []
