"""The console's event page, where every alert's link leads, over real HTTP as the daemon assembles it
(build_alerts adds it): who may see it, what it shows, the snapshot, the clip with Range requests, the
audit lines, and Chromium playing the clip on the page under the console's CSP."""

from __future__ import annotations

import hashlib
import html
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from appliance.cameras.clips import ClipInfo
from appliance.cameras.events import EndReason, EventEnded, EventStarted, event_id_for
from appliance.cameras.snapshots import jpeg_snapshot
from appliance.config import Config
from appliance.console.events_page import clip_pending
from appliance.storage.events import EventStore
from appliance.storage.footage import clip_key
from appliance.storage.models import Event
from tests.alerts_support import VIEWER, VIEWER_PASSWORD, alerts_config, console_with_alerts
from tests.recorder_support import CLIP_SIZE, encode_clip
from tests.test_clips import CHROMIUM, CHROMIUM_ARGS, PLAYS
from tests.web_support import ADMIN, ADMIN_PASSWORD, csrf_token, login

Client = TestClient[Any, Any]
T0 = datetime(2026, 11, 27, 20, 15, 3, 250000, tzinfo=UTC)
"""23:15:03 in Moscow, the store's time zone."""
SNAPSHOT = jpeg_snapshot(np.full((120, 160, 3), 90, dtype=np.uint8))


@dataclass
class Box:
    client: Client
    cfg: Config
    events: EventStore

    async def event(self, start: datetime = T0, *, clip_s: float | None = 6.0, rendition: bool = False) -> str:
        """An ended motion event of 'kassa' with its snapshot and, unless clip_s is None, an H.264 clip
        (and an H.264 'rendition', a shorter file, to tell the two apart)."""
        event_id = event_id_for("kassa", start)
        began = EventStarted(event_id, "kassa", start, start - timedelta(seconds=2), armed=True)
        await self.events.started(began, snapshot=SNAPSHOT)
        end = start + timedelta(seconds=2)
        await self.events.ended(
            EventEnded(event_id, "kassa", start, end, began.clip_from, end + timedelta(seconds=2),
                       EndReason.QUIET, True, start + timedelta(seconds=1), 0.125, ((0.1, 0.1, 0.3, 0.5),))
        )  # fmt: skip
        if clip_s is None:
            return event_id
        key = clip_key("kassa", event_id, start)
        path = self.cfg.footage_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        encode_clip(path, clip_s)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        await self.events.clip_ready(event_id, ClipInfo(key, sha, path.stat().st_size, clip_s, began.clip_from, "h264"))
        if rendition:
            copy = clip_key("kassa", event_id, start, rendition=True)
            encode_clip(self.cfg.footage_dir / copy, clip_s / 2)
            await self.events.rendition_ready(event_id, copy)
        return event_id

    def file(self, event_id: str, *, rendition: bool = False) -> bytes:
        start = datetime.strptime(event_id.removeprefix("kassa-"), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
        return (self.cfg.footage_dir / clip_key("kassa", event_id, start, rendition=rendition)).read_bytes()


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Box]:
    cfg = alerts_config(tmp_path, [])
    async with console_with_alerts(cfg) as (client, alerts):
        yield Box(client, cfg, EventStore(alerts.sessions))


async def text_of(client: Client, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    assert resp.status == status, await resp.text()
    return html.unescape(await resp.text())


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str | None, str]]:
    return [(r.__dict__["audit"], r.__dict__["user"], r.__dict__["event_id"]) for r in audit_records(caplog)]


def audit_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "appliance.audit"]


async def test_signed_in_staff_see_the_event_its_snapshot_and_its_clip(
    box: Box, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appliance.audit")
    event_id = await box.event()
    assert (await login(box.client, VIEWER, VIEWER_PASSWORD)).status == 303  # any signed-in staff, not only admins

    text = await text_of(box.client, f"/events/{event_id}")
    assert "Событие: Касса" in text
    assert "27.11.2026 23:15:03" in text and "27.11.2026 23:15:05" in text  # start and end, store time
    assert "27.11.2026 23:15:04: движение на 12,5 % площади кадра" in text
    assert f'<img src="/events/{event_id}/snapshot.jpg"' in text
    assert f'<video id="clip" controls playsinline preload="metadata" src="/events/{event_id}/clip.mp4">' in text
    original = box.file(event_id)
    assert f'<code id="sha256">{hashlib.sha256(original).hexdigest()}</code>' in text
    assert f'href="/events/{event_id}/original.mp4"' in text and "копия в H.264" not in text
    english = await text_of(box.client, f"/events/{event_id}?lang=en")
    assert "Event: Касса" in english and "motion over 12.5 % of the picture" in english

    snapshot = await box.client.get(f"/events/{event_id}/snapshot.jpg")
    assert snapshot.status == 200 and snapshot.content_type == "image/jpeg" and await snapshot.read() == SNAPSHOT

    # A browser seeking in the video: a Range request answered 206 with just those bytes.
    part = await box.client.get(f"/events/{event_id}/clip.mp4", headers={"Range": "bytes=100-1099"})
    assert part.status == 206 and part.content_type == "video/mp4"
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(original)}"
    assert await part.read() == original[100:1100]
    whole = await box.client.get(f"/events/{event_id}/clip.mp4")
    assert whole.status == 200 and await whole.read() == original
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["Cache-Control"] == "private, no-store"

    lines = audit_lines(caplog)
    assert ("event_page", VIEWER, event_id) in lines and ("event_snapshot", VIEWER, event_id) in lines
    assert lines.count(("event_clip", VIEWER, event_id)) == 2
    clip = next(r.__dict__ for r in audit_records(caplog) if r.__dict__["audit"] == "event_clip")
    assert clip["range"] == "bytes=100-1099"
    assert abs(datetime.fromisoformat(clip["at"]) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_an_h265_event_plays_its_rendition_and_downloads_the_original(box: Box) -> None:
    event_id = await box.event(rendition=True)
    assert (await login(box.client)).status == 303
    text = await text_of(box.client, f"/events/{event_id}")
    assert "здесь играет копия в H.264" in text
    assert hashlib.sha256(box.file(event_id)).hexdigest() in text

    played = await box.client.get(f"/events/{event_id}/clip.mp4")
    assert await played.read() == box.file(event_id, rendition=True)
    download = await box.client.get(f"/events/{event_id}/original.mp4")
    assert download.headers["Content-Disposition"] == f'attachment; filename="{event_id}.mp4"'
    assert await download.read() == box.file(event_id)


async def test_anonymous_visitors_are_sent_to_sign_in(box: Box, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appliance.audit")
    event_id = await box.event()
    for what in ("", "/snapshot.jpg", "/clip.mp4", "/original.mp4"):
        resp = await box.client.get(f"/events/{event_id}{what}", allow_redirects=False)
        location = URL(resp.headers["Location"])
        assert resp.status == 303 and location.path == "/login", what
        assert location.query["next"] == f"/events/{event_id}{what}"
    assert audit_lines(caplog) == []  # the handlers never ran


async def test_an_alert_link_opened_before_sign_in_shows_its_event_after_it(box: Box) -> None:
    event_id = await box.event()
    tapped = await box.client.get(f"/events/{event_id}?lang=en", allow_redirects=False)
    form = await box.client.get(tapped.headers["Location"])
    text = await form.text()
    assert f'name="next" value="/events/{event_id}?lang=en"' in text
    signed_in = await box.client.post(
        "/login",
        data={"csrf_token": csrf_token(text), "username": ADMIN, "password": ADMIN_PASSWORD,
              "next": f"/events/{event_id}?lang=en"},
        allow_redirects=False,
    )  # fmt: skip
    assert signed_in.status == 303 and signed_in.headers["Location"] == f"/events/{event_id}?lang=en"
    assert "<video" in await text_of(box.client, signed_in.headers["Location"])
    # Signed in already: the sign-in page forwards at once.
    again = await box.client.get(f"/login?next=/events/{event_id}", allow_redirects=False)
    assert again.status == 303 and again.headers["Location"] == f"/events/{event_id}"


async def test_an_unknown_event_is_a_helpful_404(box: Box, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appliance.audit")
    assert (await login(box.client)).status == 303
    text = await text_of(box.client, "/events/kassa-20200101T000000.000Z", status=404)
    assert "Событие не найдено" in text and "«kassa-20200101T000000.000Z» нет" in text
    assert "откройте её из оповещения ещё раз" in text and '<a href="/">К камерам</a>' in text
    english = await text_of(box.client, "/events/kassa-20200101T000000.000Z?lang=en", status=404)
    assert "There is no event “kassa-20200101T000000.000Z”" in english
    for what in ("snapshot.jpg", "clip.mp4", "original.mp4"):
        assert (await box.client.get(f"/events/kassa-20200101T000000.000Z/{what}")).status == 404
    assert ("event_page", "anna", "kassa-20200101T000000.000Z") in audit_lines(caplog)
    # Not an event id at all: the console's own 404 page, never a database lookup of arbitrary text.
    assert (await box.client.get("/events/..%2Fetc%2Fpasswd")).status == 404


async def test_an_event_without_its_clip_says_why(box: Box) -> None:
    gone = await box.event(clip_s=None)
    assert (await login(box.client)).status == 303
    assert "Видео этого события больше нет" in await text_of(box.client, f"/events/{gone}")
    assert (await box.client.get(f"/events/{gone}/clip.mp4")).status == 404

    # A clip whose file retention already deleted is not offered either.
    deleted = await box.event(T0 + timedelta(minutes=1))
    start = T0 + timedelta(minutes=1)
    (box.cfg.footage_dir / clip_key("kassa", deleted, start)).unlink()
    text = await text_of(box.client, f"/events/{deleted}")
    assert "<video" not in text and "Видео этого события больше нет" in text
    assert (await box.client.get(f"/events/{deleted}/clip.mp4")).status == 404

    now = datetime.now(UTC)
    going_on = event_id_for("kassa", now)
    await box.events.started(EventStarted(going_on, "kassa", now, now, armed=True))
    assert "появится через несколько секунд" in await text_of(box.client, f"/events/{going_on}")


def test_a_clip_is_expected_only_while_it_can_still_come() -> None:
    end = T0 + timedelta(seconds=5)
    open_event = Event(id="e", camera_id="kassa", kind="motion", start_utc=T0, clip_from=T0, armed=True)
    assert clip_pending(open_event, T0 + timedelta(days=1))
    ended = Event(
        id="e", camera_id="kassa", kind="motion", start_utc=T0, end_utc=end, clip_from=T0, clip_to=end, armed=True
    )
    assert clip_pending(ended, end + timedelta(seconds=30))
    assert not clip_pending(ended, end + timedelta(minutes=5))


@pytest.mark.slow
async def test_chromium_plays_the_clip_on_the_event_page(box: Box) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed (apt-get install -y chromium)")
    playwright = pytest.importorskip("playwright.async_api", reason="Playwright is missing (pip install playwright)")
    event_id = await box.event()
    origin = str(box.client.make_url("/")).rstrip("/")
    blocked: list[str] = []
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
            # The alert's link, opened while signed out: signing in leads to the event.
            await page.goto(f"{origin}/events/{event_id}")
            assert URL(page.url).path == "/login"
            await page.fill("#username", "anna")
            await page.fill("#password", "correct horse battery")
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            assert page.url == f"{origin}/events/{event_id}"
            await page.evaluate("document.getElementById('clip').muted = true; document.getElementById('clip').play()")
            played = await page.evaluate(PLAYS, "clip")
            shown = await page.evaluate("document.querySelector('img').naturalWidth")
        finally:
            await browser.close()
    assert played["ready"] == 4 and played["width"] == CLIP_SIZE[0], played
    assert shown == 160  # the snapshot loaded too
    assert blocked == []
