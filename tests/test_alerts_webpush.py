"""Web Push: the VAPID key, the subscriptions table, the console's "Push on this phone" page, and the
channel delivering to a local aiohttp server that plays the push service. The test is the phone:
it holds the subscription's private key and auth secret and decrypts what arrives (http_ece)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import http_ece
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from appliance.alerts.channel import Alert, DeliveryError
from appliance.alerts.channels import ChannelContext, ConsoleChannel, create_channel
from appliance.alerts.channels.webpush import (
    DEFAULT_SUBJECT,
    MAX_PAYLOAD_BYTES,
    TTL_S,
    WebPushChannel,
    classify,
    push_payload,
    vapid_subject,
)
from appliance.alerts.push_console import InvalidSubscription, parse_subscription, push_console_feature
from appliance.alerts.settings import AlertsSection, ChannelSettings
from appliance.alerts.vapid import application_server_key, load_or_create_vapid_key, vapid_key_path
from appliance.cameras.events import EventStarted
from appliance.cameras.snapshots import jpeg_snapshot
from appliance.cameras.status import StatusBoard
from appliance.config import Config
from appliance.console.app import create_console_app
from appliance.console.events_page import events_feature
from appliance.evidence.keys import KeyFileError
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.events import EventStore
from appliance.storage.models import User
from appliance.storage.models_webpush import WebPushSubscription
from appliance.storage.users import UserStore
from appliance.storage.webpush import PushSubscriptionStore
from tests.web_support import FAST_HASHER, csrf_token, login, make_config, serve, user_store

Client = TestClient[Any, Any]
T0 = datetime(2026, 11, 27, 20, 15, 3, tzinfo=UTC)
SNAPSHOT = jpeg_snapshot(np.full((90, 120, 3), 200, dtype=np.uint8))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Phone:
    """A browser's side of a subscription: what PushManager.subscribe() creates and keeps secret."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(raw)

    def subscription_json(self, endpoint: str) -> str:
        return json.dumps(
            {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": self.p256dh, "auth": b64url(self.auth)}}
        )

    async def subscribe(
        self, store: PushSubscriptionStore, endpoint: str, user_id: int, language: str = "ru"
    ) -> WebPushSubscription:
        return await store.subscribe(
            endpoint=endpoint, p256dh=self.p256dh, auth=b64url(self.auth), user_id=user_id, language=language
        )

    def decrypt(self, body: bytes) -> dict[str, Any]:
        plain = http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm")
        doc: dict[str, Any] = json.loads(plain)
        return doc


def _alert(**overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "alert_id": "a-1",
        "kind": "motion",
        "part": "snapshot",
        "title": "Движение: «Касса»",
        "body": "28.11.2026 01:15:03, зона «прилавок»",
        "occurred_utc": T0,
        "camera_id": "kassa",
        "camera_name": "Касса",
        "event_id": "kassa-20261127T201503",
        "link": "https://shop.example.org/events/kassa-20261127T201503",
        "snapshot_jpeg": b"\xff\xd8\xff" + b"\x00" * 5000,
    }
    values.update(overrides)
    return Alert(**values)


# ------------------------------------------------------------------------- a push service ---


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class PushService:
    """A local stand-in for FCM / Mozilla autopush: answers each endpoint path as the test says."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: dict[str, list[web.Response]] = {}
        app = web.Application()
        app.router.add_post("/push/{token}", self._push)
        self.server = TestServer(app, host="127.0.0.1")

    async def _push(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, dict(request.headers), await request.read()))
        queue = self.answers.get(request.match_info["token"])
        if queue:
            return queue.pop(0)
        return web.Response(status=201)

    def endpoint(self, token: str) -> str:
        return str(self.server.make_url(f"/push/{token}"))

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def to(self, token: str) -> list[Received]:
        return [r for r in self.received if r.path == f"/push/{token}"]


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    service = PushService()
    await service.server.start_server()
    try:
        yield service
    finally:
        await service.server.close()


# ----------------------------------------------------------------------------- fixtures ---


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def users(cfg: Config) -> AsyncIterator[UserStore]:
    async with user_store(cfg) as store:
        yield store


@pytest.fixture
async def sessions(cfg: Config, users: UserStore) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(cfg.database_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def store(sessions: async_sessionmaker[AsyncSession]) -> PushSubscriptionStore:
    return PushSubscriptionStore(sessions)


@pytest.fixture
def vapid_key(cfg: Config) -> ec.EllipticCurvePrivateKey:
    return load_or_create_vapid_key(cfg.appliance.data_dir)


@pytest.fixture
async def console(
    cfg: Config,
    users: UserStore,
    sessions: async_sessionmaker[AsyncSession],
    store: PushSubscriptionStore,
    vapid_key: ec.EllipticCurvePrivateKey,
) -> AsyncIterator[Client]:
    """The Push page, and the event pages a notification's snapshot comes from."""
    feature = push_console_feature(store, vapid_key, channel_configured=True)
    app = create_console_app(cfg, users, StatusBoard(), list, features=[feature, events_feature(cfg, sessions)])
    async with serve(app) as client:
        yield client


async def _sign_in(client: Client) -> str:
    """Sign in; the session's CSRF token as the Push page carries it."""
    assert (await login(client)).status == 303
    page = await client.get("/push")
    assert page.status == 200
    return csrf_token(await page.text())


async def _admin_id(users: UserStore) -> int:
    return next(u.id for u in await users.list() if u.username == "anna")


# ------------------------------------------------------------------- the channel end to end ---


def _verify_vapid(header: str, public_key_b64: str, endpoint_origin: str) -> dict[str, Any]:
    """Check `Authorization: vapid t=<JWT>, k=<key>` (RFC 8292) without the library under test."""
    scheme, _, params = header.partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == public_key_b64
    signing_input, _, signature = fields["t"].rpartition(".")
    head_b64, _, claims_b64 = signing_input.partition(".")
    assert json.loads(unb64url(head_b64)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64url(signature)
    assert len(raw) == 64  # ES256: r || s, 32 bytes each
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(public_key_b64))
    public.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    claims: dict[str, Any] = json.loads(unb64url(claims_b64))
    assert claims["aud"] == endpoint_origin
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    return claims


async def test_alert_arrives_encrypted_for_the_phone_and_signed_with_the_served_key(
    console: Client,
    users: UserStore,
    store: PushSubscriptionStore,
    vapid_key: ec.EllipticCurvePrivateKey,
    push_service: PushService,
) -> None:
    await _sign_in(console)
    served = await console.get("/push/vapid-public-key")
    public_key = (await served.json())["publicKey"]
    phone = Phone()
    await phone.subscribe(store, push_service.endpoint("phone-1"), await _admin_id(users))
    channel = WebPushChannel("push", store, vapid_key, subject="https://shop.example.org")
    try:
        await channel.send(_alert())
    finally:
        await channel.close()

    [got] = push_service.received
    headers = {k.lower(): v for k, v in got.headers.items()}
    claims = _verify_vapid(headers["authorization"], public_key, push_service.origin)
    assert claims["sub"] == "https://shop.example.org"
    assert headers["content-encoding"] == "aes128gcm"
    assert headers["ttl"] == str(TTL_S) and headers["urgency"] == "high"
    payload = phone.decrypt(got.body)
    assert payload == {
        "title": "Движение: «Касса»",
        "body": "28.11.2026 01:15:03, зона «прилавок»",
        "url": "https://shop.example.org/events/kassa-20261127T201503",
        "event_id": "kassa-20261127T201503",
        "alert_id": "a-1",
        "tag": "kassa-20261127T201503",
        "time": T0.isoformat(),
        "image": "/events/kassa-20261127T201503/snapshot.jpg",
    }
    # Another phone's key cannot read it.
    with pytest.raises(http_ece.ECEException, match="Decryption error"):
        Phone(auth=phone.auth).decrypt(got.body)
    [row] = await store.list()
    assert row.last_ok_utc is not None and row.last_error is None


async def test_gone_subscription_is_removed_and_the_others_still_get_the_alert(
    users: UserStore, store: PushSubscriptionStore, vapid_key: ec.EllipticCurvePrivateKey, push_service: PushService
) -> None:
    user_id = await _admin_id(users)
    kept, gone = Phone(), Phone()
    for token, phone in (("kept", kept), ("gone", gone)):
        await phone.subscribe(store, push_service.endpoint(token), user_id)
    push_service.answers["gone"] = [web.Response(status=410, text="subscription expired")]
    channel = WebPushChannel("push", store, vapid_key)
    try:
        await channel.send(_alert())  # delivered to one phone: a success
        assert [r.endpoint for r in await store.list()] == [push_service.endpoint("kept")]
        assert kept.decrypt(push_service.to("kept")[0].body)["alert_id"] == "a-1"

        # The last phone gone too: nobody can get the alert, which no retry changes.
        push_service.answers["kept"] = [web.Response(status=404)]
        with pytest.raises(DeliveryError) as caught:
            await channel.send(_alert(alert_id="a-2"))
    finally:
        await channel.close()
    assert caught.value.permanent
    assert "HTTP 404" in caught.value.provider_message and "/push/kept" not in caught.value.provider_message
    assert await store.list() == []
    with pytest.raises(DeliveryError) as none_left:
        await WebPushChannel("push", store, vapid_key).send(_alert(alert_id="a-3"))
    assert none_left.value.permanent and "Push on this phone" in none_left.value.provider_message


async def test_busy_push_service_is_retried_later_without_repeating_phones_that_have_it(
    users: UserStore, store: PushSubscriptionStore, vapid_key: ec.EllipticCurvePrivateKey, push_service: PushService
) -> None:
    user_id = await _admin_id(users)
    for token in ("fine", "busy", "slow"):
        phone = Phone()
        await phone.subscribe(store, push_service.endpoint(token), user_id)
    push_service.answers["busy"] = [web.Response(status=429, headers={"Retry-After": "120"})]
    push_service.answers["slow"] = [web.Response(status=503, text="try later")]
    channel = WebPushChannel("push", store, vapid_key)
    try:
        with pytest.raises(DeliveryError) as caught:
            await channel.send(_alert())
        assert not caught.value.permanent
        assert caught.value.retry_after_s == 120
        assert "2 of 3 phones" in caught.value.provider_message
        rows = {r.endpoint.rsplit("/", 1)[1]: r for r in await store.list()}
        assert rows["busy"].last_error is not None and "HTTP 429" in rows["busy"].last_error
        assert rows["fine"].last_ok_utc is not None

        await channel.send(_alert())  # the dispatcher's retry
    finally:
        await channel.close()
    assert [len(push_service.to(t)) for t in ("fine", "busy", "slow")] == [1, 2, 2]


async def test_refused_phone_is_reported_and_unreachable_service_is_transient(
    users: UserStore, store: PushSubscriptionStore, vapid_key: ec.EllipticCurvePrivateKey, push_service: PushService
) -> None:
    user_id = await _admin_id(users)
    phone = Phone()
    await phone.subscribe(store, push_service.endpoint("p"), user_id)
    push_service.answers["p"] = [web.Response(status=403, text="VAPID key does not match the subscription")]
    channel = WebPushChannel("push", store, vapid_key, timeout_s=5)
    try:
        with pytest.raises(DeliveryError) as refused:
            await channel.send(_alert())
        assert refused.value.permanent and "VAPID key does not match" in refused.value.provider_message
        [row] = await store.list()  # kept: it is shown on the Push page, with the error
        assert row.last_error is not None and "HTTP 403" in row.last_error

        await push_service.server.close()
        with pytest.raises(DeliveryError) as down:
            await channel.send(_alert(alert_id="a-2"))
        assert not down.value.permanent and "127.0.0.1" in down.value.provider_message
    finally:
        await channel.close()


async def test_a_channel_with_a_language_sends_to_phones_of_that_language_only(
    users: UserStore, store: PushSubscriptionStore, vapid_key: ec.EllipticCurvePrivateKey, push_service: PushService
) -> None:
    user_id = await _admin_id(users)
    for token, lang in (("ru-phone", "ru"), ("en-phone", "en")):
        phone = Phone()
        await phone.subscribe(store, push_service.endpoint(token), user_id, lang)
    english = WebPushChannel("push-en", store, vapid_key, language="en")
    everyone = WebPushChannel("push", store, vapid_key)
    try:
        await english.send(_alert(title="Motion: Till"))
        assert [r.path for r in push_service.received] == ["/push/en-phone"]
        await everyone.send(_alert(alert_id="a-2"))
    finally:
        await english.close()
        await everyone.close()
    assert sorted(r.path for r in push_service.received[1:]) == ["/push/en-phone", "/push/ru-phone"]


async def test_created_from_its_settings_with_the_key_of_the_data_dir(
    cfg: Config, sessions: async_sessionmaker[AsyncSession], vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    settings = ChannelSettings(id="phones", kind="webpush", language="en")
    channel = create_channel(ChannelContext(settings, cfg, sessions, cfg.appliance.data_dir))
    assert isinstance(channel, WebPushChannel) and isinstance(channel, ConsoleChannel)
    assert channel.id == "phones" and channel.max_attachment_bytes == 0
    feature = channel.console_feature()
    assert feature.name == "push" and [link.path for link in feature.nav] == ["/push"]
    assert application_server_key(channel._vapid_key) == application_server_key(vapid_key)

    def section(**alerts: str) -> AlertsSection:
        return AlertsSection.model_validate(alerts)

    assert vapid_subject(section(console_url="https://shop.example.org")) == "https://shop.example.org"
    assert vapid_subject(section(console_url="http://192.168.1.10:8080")) == DEFAULT_SUBJECT
    assert vapid_subject(section()) == DEFAULT_SUBJECT
    contact = section(console_url="https://shop.example.org", vapid_contact="mailto:owner@example.org")
    assert vapid_subject(contact) == "mailto:owner@example.org"
    with_contact = cfg.model_copy(update={"alerts": contact})
    channel = create_channel(ChannelContext(settings, with_contact, sessions, cfg.appliance.data_dir))
    assert isinstance(channel, WebPushChannel) and channel._subject == "mailto:owner@example.org"


# ------------------------------------------------------------------------- pure pieces ---


def test_payload_fits_a_push_message_however_long_the_body() -> None:
    long = push_payload(_alert(body="Длинный текст " * 2000, link=None))
    assert len(long) <= MAX_PAYLOAD_BYTES
    doc = json.loads(long)
    assert doc["body"].endswith("…") and doc["url"] == "/" and doc["title"] == "Движение: «Касса»"
    notice = json.loads(push_payload(_alert(kind="disk_nearly_full", part="notice", event_id=None, camera_id=None)))
    assert notice["tag"] == "a-1" and notice["event_id"] is None and "image" not in notice
    assert "image" not in json.loads(push_payload(_alert(snapshot_jpeg=None)))


def test_push_service_answers_are_classified() -> None:
    endpoint = "https://fcm.googleapis.com/fcm/send/SECRET-TOKEN"
    assert classify(endpoint, 410, "", None).outcome == "gone"
    assert classify(endpoint, 404, "", None).outcome == "gone"
    assert classify(endpoint, 400, "bad", None).outcome == "refused"
    busy = classify(endpoint, 429, "", "30")
    assert (busy.outcome, busy.retry_after_s) == ("later", 30)
    assert classify(endpoint, 502, "", None).outcome == "later"
    assert classify(endpoint, None, "ConnectionRefused", None).outcome == "later"
    assert all("SECRET-TOKEN" not in classify(endpoint, s, "", None).message for s in (None, 400, 410, 500))


def test_browser_subscriptions_are_checked() -> None:
    phone = Phone()
    ok = parse_subscription(phone.subscription_json("https://fcm.googleapis.com/fcm/send/abc"))
    assert (ok.endpoint, ok.p256dh, ok.auth) == (
        "https://fcm.googleapis.com/fcm/send/abc",
        phone.p256dh,
        b64url(phone.auth),
    )
    keys = {"p256dh": phone.p256dh, "auth": b64url(phone.auth)}
    bad = [
        "not json",
        "[]",
        json.dumps({"endpoint": "http://push.example/x", "keys": keys}),
        json.dumps({"endpoint": "https://[::1/x", "keys": keys}),
        json.dumps({"endpoint": "https://push.example/" + "x" * 2000, "keys": keys}),
        json.dumps({"endpoint": "https://push.example/x"}),
        json.dumps({"endpoint": "https://push.example/x", "keys": {**keys, "auth": b64url(b"short")}}),
        json.dumps({"endpoint": "https://push.example/x", "keys": {**keys, "p256dh": b64url(b"\x04" + b"\x01" * 64)}}),
        json.dumps({"endpoint": "https://push.example/x", "keys": {**keys, "p256dh": "!!!"}}),
    ]
    for text in bad:
        with pytest.raises(InvalidSubscription):
            parse_subscription(text)


# ------------------------------------------------------------------------------ VAPID key ---


def test_vapid_key_is_created_once_owner_only_and_refused_when_others_can_read_it(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        key = load_or_create_vapid_key(tmp_path)
    finally:
        os.umask(old)
    path = vapid_key_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert isinstance(key.curve, ec.SECP256R1)
    public = application_server_key(key)
    assert len(unb64url(public)) == 65 and unb64url(public)[0] == 4
    assert application_server_key(load_or_create_vapid_key(tmp_path)) == public  # same key on every start

    path.chmod(0o640)
    with pytest.raises(KeyFileError, match=r"mode 640.*phones"):
        load_or_create_vapid_key(tmp_path)
    path.chmod(0o600)
    path.write_bytes(b"not a key")
    with pytest.raises(KeyFileError, match="not a readable PEM"):
        load_or_create_vapid_key(tmp_path)
    other = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(
        other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(KeyFileError, match="P-256"):
        load_or_create_vapid_key(tmp_path)


# ---------------------------------------------------------------------- the console page ---


async def test_signed_in_staff_subscribes_this_browser(
    console: Client, users: UserStore, store: PushSubscriptionStore
) -> None:
    token = await _sign_in(console)
    phone = Phone()
    endpoint = "https://fcm.googleapis.com/fcm/send/phone-1"
    resp = await console.post(
        "/push/subscribe?lang=en", data={"csrf_token": token, "subscription": phone.subscription_json(endpoint)}
    )
    assert resp.status == 200 and await resp.json() == {"ok": True}
    [row] = await store.list()
    assert (row.endpoint, row.p256dh, row.auth) == (endpoint, phone.p256dh, b64url(phone.auth))
    assert (row.user_id, row.language) == (await _admin_id(users), "en")

    # The same browser again (new keys after the browser renewed it, the page now in Russian): still one row.
    renewed = Phone()
    await console.post(
        "/push/subscribe?lang=ru", data={"csrf_token": token, "subscription": renewed.subscription_json(endpoint)}
    )
    [row] = await store.list()
    assert row.p256dh == renewed.p256dh and row.language == "ru"

    page = await (await console.get("/push")).text()
    assert "Телефон 1" in page and 'src="/static/push.js"' in page and "<script>" not in page

    bad = await console.post("/push/subscribe", data={"csrf_token": token, "subscription": '{"endpoint": 1}'})
    assert bad.status == 400 and "неполные данные" in (await bad.json())["error"]

    gone = await console.post("/push/unsubscribe", data={"csrf_token": token, "endpoint": endpoint})
    assert await gone.json() == {"ok": True, "removed": True}
    assert await store.list() == []


async def test_subscribing_without_the_csrf_token_or_a_session_is_refused(
    console: Client, cfg: Config, users: UserStore, store: PushSubscriptionStore, vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    body = Phone().subscription_json("https://fcm.googleapis.com/fcm/send/x")
    out = await console.post("/push/subscribe", data={"subscription": body}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login"
    assert (await console.get("/push/vapid-public-key", allow_redirects=False)).status == 303

    token = await _sign_in(console)
    for data in ({"subscription": body}, {"subscription": body, "csrf_token": "forged"}):
        resp = await console.post("/push/subscribe", data=data)
        assert resp.status == 403 and "Форма устарела" in await resp.text()
    # A token from another session does not work either.
    feature = push_console_feature(store, vapid_key, channel_configured=True)
    async with serve(create_console_app(cfg, users, StatusBoard(), list, features=[feature])) as other:
        assert await _sign_in(other) != token
        resp = await other.post("/push/subscribe", data={"subscription": body, "csrf_token": token})
        assert resp.status == 403
    assert await store.list() == []


async def test_a_phone_can_be_removed_from_the_page_by_its_owner_only(
    console: Client, users: UserStore, store: PushSubscriptionStore
) -> None:
    token = await _sign_in(console)
    other = await users.add("boris", "another long password", role="viewer")
    phone = Phone()
    mine = await phone.subscribe(store, "https://push.example/mine", await _admin_id(users))
    theirs = await phone.subscribe(store, "https://push.example/theirs", other.id)
    await store.failed(mine.id, "https://push.example: HTTP 403 VAPID mismatch")
    page = await (await console.get("/push")).text()
    assert "HTTP 403 VAPID mismatch" in page and page.count("/remove") == 1

    refused = await console.post(f"/push/phones/{theirs.id}/remove", data={"csrf_token": token})
    assert refused.status == 404
    done = await console.post(f"/push/phones/{mine.id}/remove", data={"csrf_token": token}, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/push"
    assert [r.endpoint for r in await store.list()] == ["https://push.example/theirs"]


async def test_service_worker_manifest_and_policy_make_an_installable_app(console: Client) -> None:
    manifest = await console.get("/static/manifest.json")
    doc = json.loads(await manifest.text())
    assert doc["start_url"] == "/" and doc["display"] == "standalone" and doc["icons"]
    login_page = await (await console.get("/login")).text()
    assert '<link rel="manifest" href="/static/manifest.json">' in login_page
    csp = manifest.headers["Content-Security-Policy"]
    for directive in ("script-src 'self'", "worker-src 'self'", "manifest-src 'self'", "connect-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp

    await _sign_in(console)
    worker = await console.get("/push-sw.js")
    assert worker.status == 200 and worker.content_type == "text/javascript"
    text = await worker.text()
    assert 'addEventListener("push"' in text and "showNotification" in text
    page = await (await console.get("/push")).text()
    assert 'data-worker-url="/push-sw.js"' in page and "Оповещения на телефон" in page


async def test_page_warns_when_no_webpush_channel_is_configured(
    cfg: Config, users: UserStore, store: PushSubscriptionStore, vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    feature = push_console_feature(store, vapid_key, channel_configured=False)
    async with serve(create_console_app(cfg, users, StatusBoard(), list, features=[feature])) as client:
        await _sign_in(client)
        page = await (await client.get("/push?lang=en")).text()
    assert "No Web Push channel is set up" in page


# --------------------------------------------------------------- the table, both backends ---


async def test_subscription_store_on_both_backends(db_engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(db_engine)
    users = UserStore(sessions, hasher=FAST_HASHER)
    anna = await users.add("anna", "correct horse battery", role="admin")
    store = PushSubscriptionStore(sessions)
    first = await store.subscribe(
        endpoint="https://p.example/1", p256dh="k1", auth="a1", user_id=anna.id, language="ru"
    )
    await store.subscribe(endpoint="https://p.example/2", p256dh="k2", auth="a2", user_id=anna.id, language="en")
    await store.failed(first.id, "x" * 2000, T0)
    again = await store.subscribe(
        endpoint="https://p.example/1", p256dh="k3", auth="a3", user_id=anna.id, language="en"
    )
    assert again.id == first.id and again.p256dh == "k3" and again.last_error is None
    await store.delivered([first.id], T0 + timedelta(seconds=1))
    assert [r.endpoint for r in await store.list("en")] == ["https://p.example/1", "https://p.example/2"]
    assert await store.list("ru") == []
    [one, _] = await store.of_user(anna.id)
    assert one.last_ok_utc == T0 + timedelta(seconds=1)
    await store.failed(one.id, "y" * 2000, T0)
    assert len((await store.of_user(anna.id))[0].last_error or "") == 500
    assert await store.unsubscribe("https://p.example/2") and not await store.unsubscribe("https://p.example/2")
    # A deleted staff account takes its phones with it.
    async with sessions.begin() as session:
        await session.execute(delete(User).where(User.id == anna.id))
    assert await store.list() == []


def test_invalid_signature_is_detected_by_the_test_helper() -> None:
    """The VAPID check above must be able to fail: a token signed by another key is refused."""
    from py_vapid import Vapid02

    signer, stranger = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    header = Vapid02(private_key=stranger).sign({"sub": "mailto:a@b.example", "aud": "http://127.0.0.1:1"})
    token = header["Authorization"].split("t=")[1].split(",")[0]
    forged = f"vapid t={token},k={application_server_key(signer)}"
    with pytest.raises(InvalidSignature):
        _verify_vapid(forged, application_server_key(signer), "http://127.0.0.1:1")


# ------------------------------------------------------------------------------ a browser ---

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


async def _text_becomes(page: Any, selector: str, wanted: str) -> str:
    # Polled from Python: Playwright's wait_for_function evaluates a string, which the page's CSP forbids.
    text = ""
    for _ in range(150):
        text = await page.text_content(selector) or ""
        if wanted in text:
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{selector} shows {text!r}, not {wanted!r}")


@pytest.mark.slow
async def test_chromium_registers_the_worker_under_the_csp_and_it_shows_a_pushed_alert(
    console: Client, sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed (apt-get install -y chromium)")
    playwright = pytest.importorskip("playwright.async_api", reason="Playwright is missing (pip install playwright)")
    caplog.set_level(logging.INFO, logger="appliance.audit")
    event_id = "kassa-20261127T201503"
    await EventStore(sessions).started(EventStarted(event_id, "kassa", T0, T0, armed=True), snapshot=SNAPSHOT)
    origin = str(console.make_url("/")).rstrip("/")
    blocked: list[str] = []
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(locale="ru-RU")
            page = await context.new_page()
            page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
            await page.goto(f"{origin}/login")
            await page.fill("#username", "anna")
            await page.fill("#password", "correct horse battery")
            await page.click("button[type=submit]")
            await page.goto(f"{origin}/push")
            # The script ran (no inline code), registered the worker for the whole console and read the key.
            await _text_becomes(page, "#push-status", "Оповещения на этот телефон выключены.")
            scope = await page.evaluate("navigator.serviceWorker.getRegistration('/').then(r => r && r.scope)")
            assert scope == f"{origin}/"

            # A push as the channel makes it, handed to the worker by the browser's DevTools protocol.
            await context.grant_permissions(["notifications"], origin=origin)
            cdp = await context.new_cdp_session(page)
            registrations: list[dict[str, Any]] = []
            cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
            await cdp.send("ServiceWorker.enable")
            for _ in range(50):
                if registrations:
                    break
                await asyncio.sleep(0.1)
            data = push_payload(_alert(link=f"{origin}/events/kassa-20261127T201503")).decode()
            await cdp.send(
                "ServiceWorker.deliverPushMessage",
                {"origin": origin, "registrationId": registrations[0]["registrationId"], "data": data},
            )
            shown: list[dict[str, Any]] = []
            for _ in range(50):
                shown = await page.evaluate(
                    "navigator.serviceWorker.getRegistration('/').then(r => r.getNotifications())"
                    ".then(list => list.map(n => ({title: n.title, body: n.body, tag: n.tag, url: n.data.url, "
                    "image: n.image})))"
                )
                if shown:
                    break
                await asyncio.sleep(0.1)
            assert shown == [
                {
                    "title": "Движение: «Касса»",
                    "body": "28.11.2026 01:15:03, зона «прилавок»",
                    "tag": "kassa-20261127T201503",
                    "url": f"{origin}/events/kassa-20261127T201503",
                    "image": f"{origin}/events/kassa-20261127T201503/snapshot.jpg",
                }
            ]
            # The browser fetched the snapshot for the notification as the signed-in staff member.
            fetched = [r.__dict__ for r in caplog.records if r.name == "appliance.audit"]
            assert [(f["audit"], f["user"], f["event_id"]) for f in fetched] == [("event_snapshot", "anna", event_id)]

            # Turning alerts on needs the browser's push service, which this one refuses (a private window):
            # the page says it did not work instead of waiting forever.
            await page.click("#push-on")
            await _text_becomes(page, "#push-status", "Не получилось")
        finally:
            await browser.close()
    assert blocked == []
