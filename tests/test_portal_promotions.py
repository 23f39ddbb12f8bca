"""Promotions: sanitising the owner's HTML, validity windows and order (on SQLite and PostgreSQL),
image uploads, the portal's image route and partial, and the console section over HTTP."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import cv2
import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.portal.promo_images import MAX_SIDE, MAX_UPLOAD_BYTES, ImageRejected, PromoImages, dimensions, reencode
from appliance.portal.promotions import Promotion, PromotionError, PromotionStore, sanitize_html
from appliance.portal.promotions_console import promotions_console_feature
from appliance.portal.promotions_web import PORTAL_MESSAGES, install_promo_routes
from appliance.storage.db import make_sessionmaker
from appliance.web import errors
from appliance.web.factory import base_app
from appliance.web.i18n import merge
from appliance.web.templating import make_environment
from tests.guest_wifi_support import VIEWER, VIEWER_PASSWORD, Console, console_with, form_tokens
from tests.web_support import make_config, serve

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt:alert(1)">click</a>',
    '<a href="jav&#x09;ascript:alert(1)">click</a>',
    '<a href="&#106;avascript:alert(1)">click</a>',
    '<a href="data:text/html,<script>alert(1)</script>">click</a>',
    '<a href="vbscript:msgbox(1)">click</a>',
    "<svg onload=alert(1)><circle/></svg>",
    '<iframe src="https://evil.example"></iframe>',
    '<p style="background:url(javascript:alert(1))" onclick="alert(1)">text</p>',
    "<b onmouseover=alert(1)>bold</b>",
    '<form action="https://evil.example"><input name=x></form>',
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    "<!--<script>alert(1)</script>-->",
    '"><script>alert(1)</script>',
    "<style>body{display:none}</style>",
    '<a href="https://ok.example" onfocus="alert(1)" autofocus>ok</a>',
]
DANGEROUS = (
    "<script",
    "javascript:",
    "vbscript:",
    "data:",
    "onerror",
    "onload",
    "onclick",
    "onmouseover",
    "onfocus",
    "<iframe",
    "<svg",
    "<img",
    "<form",
    "<input",
    "<style",
    "style=",
    "<math",
    "alert(1)</script",
)


def _inert(html: str) -> bool:
    low = html.lower()
    return not any(d in low for d in DANGEROUS)


# ------------------------------------------------------------------------------ sanitising ---


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_xss_payloads_become_inert(payload: str) -> None:
    assert _inert(sanitize_html(payload))


def test_simple_markup_survives_and_links_get_rel() -> None:
    html = sanitize_html(
        "<p>Скидка <b>20%</b> на <strong>всё</strong>, <i>только</i> <em>сегодня</em><br>"
        "<ul><li>кофе</li></ul><ol><li>чай</li></ol> "
        '<a href="https://shop.example/akcii" target="_blank">подробнее</a></p>'
    )
    for tag in ("<p>", "<b>", "<strong>", "<i>", "<em>", "<br>", "<ul>", "<ol>", "<li>"):
        assert tag in html
    assert '<a href="https://shop.example/akcii" rel="noopener nofollow">подробнее</a>' in html
    assert "target" not in html


def test_relative_and_protocol_less_links_lose_their_address() -> None:
    for href in ("/admin", "promo.html", "//evil.example/x", "mailto:a@b.example"):
        html = sanitize_html(f'<a href="{href}">x</a>')
        assert "href" not in html, href


# ------------------------------------------------------------------------- the store (DBs) ---


@pytest.fixture
def store(db_engine: AsyncEngine) -> PromotionStore:
    return PromotionStore(make_sessionmaker(db_engine))


async def test_validity_windows_and_order(store: PromotionStore) -> None:
    always = await store.create("Всегда", "<p>Кофе</p>")
    running = await store.create("Неделя", "x", NOW - timedelta(days=1), NOW + timedelta(days=6))
    future = await store.create("Скоро", "x", NOW + timedelta(days=1), None)
    ended = await store.create("Прошла", "x", None, NOW)  # the end is exclusive
    assert [p.id for p in await store.list()] == [always.id, running.id, future.id, ended.id]
    assert [p.title for p in await store.current(NOW)] == ["Всегда", "Неделя"]
    assert [p.title for p in await store.current(NOW + timedelta(days=2))] == ["Всегда", "Неделя", "Скоро"]
    assert [p.title for p in await store.current(NOW - timedelta(days=3))] == ["Всегда", "Прошла"]


async def test_update_sanitises_and_validates(store: PromotionStore) -> None:
    promo = await store.create("  Чай   со скидкой ", "<p>ok</p>")
    assert promo.title == "Чай со скидкой"
    updated = await store.update(promo.id, "Чай", '<p onclick="x()">new</p><script>bad()</script>', by="anna")
    assert updated.text_html == "<p>new</p>"
    for args, key in [
        (("", "x"), "promos.error.title_missing"),
        (("x" * 121, "x"), "promos.error.title_long"),
        (("x", "<p>" + "a" * 9000 + "</p>"), "promos.error.text_long"),
        (("x", "x", NOW, NOW - timedelta(hours=1)), "promos.error.dates"),
    ]:
        with pytest.raises(PromotionError) as info:
            await store.update(promo.id, *args)  # type: ignore[arg-type]
        assert info.value.key == key
    assert (await store.get(promo.id)) == updated


async def test_reorder_move_and_delete(store: PromotionStore) -> None:
    a, b, c = [await store.create(t, "") for t in "ABC"]
    await store.reorder([c.id, a.id, b.id])
    assert [p.title for p in await store.list()] == ["C", "A", "B"]
    await store.move(b.id, -1)
    await store.move(c.id, -1)  # already first: nothing happens
    assert [p.title for p in await store.list()] == ["C", "B", "A"]
    with pytest.raises(PromotionError):
        await store.reorder([a.id, b.id])
    assert await store.delete(b.id) and not await store.delete(b.id)
    assert [p.title for p in await store.list()] == ["C", "A"]


async def test_another_appliance_sees_changes_after_the_cache_expires(db_engine: AsyncEngine) -> None:
    now = [0.0]
    reader = PromotionStore(make_sessionmaker(db_engine), clock=lambda: now[0])
    writer = PromotionStore(make_sessionmaker(db_engine))
    assert await reader.list() == []
    await writer.create("Новая", "")
    assert await reader.list() == []  # cached
    now[0] = 31.0
    assert [p.title for p in await reader.list()] == ["Новая"]


async def test_image_url_changes_with_the_image(store: PromotionStore) -> None:
    promo = await store.create("С картинкой", "")
    assert promo.image_url is None
    await store.set_image(promo.id, "a" * 64)
    first = (await store.get(promo.id)).image_url  # type: ignore[union-attr]
    await store.set_image(promo.id, "b" * 64)
    second = (await store.get(promo.id)).image_url  # type: ignore[union-attr]
    assert first == f"/promo-images/{promo.id}.jpg?v={'a' * 16}" and second != first


# ---------------------------------------------------------------------------------- images ---


def _picture(width: int, height: int, ext: str = ".jpg", channels: int = 3) -> bytes:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (height, width, channels), dtype=np.uint8)
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def _decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


@pytest.mark.parametrize(("ext", "kind"), [(".jpg", "jpeg"), (".png", "png"), (".webp", "webp")])
def test_header_dimensions_match_the_picture(ext: str, kind: str) -> None:
    assert dimensions(_picture(321, 123, ext), kind) == (321, 123)  # type: ignore[arg-type]


def test_lossless_webp_dimensions() -> None:
    ok, data = cv2.imencode(".webp", np.zeros((45, 67, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert ok and dimensions(data.tobytes(), "webp") == (67, 45)


def test_a_big_photo_is_reencoded_small_and_without_trailing_data() -> None:
    polyglot = _picture(3000, 2000) + b"<script>alert(1)</script>"
    out = reencode(polyglot)
    assert out.startswith(b"\xff\xd8") and b"<script>" not in out
    h, w = _decoded(out).shape[:2]
    assert max(w, h) == MAX_SIDE and abs(w / h - 1.5) < 0.01


def test_transparent_png_gets_a_white_background() -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)  # fully transparent black
    ok, png = cv2.imencode(".png", rgba)
    pixel = _decoded(reencode(png.tobytes()))[20, 20]
    assert ok and all(v > 245 for v in pixel)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (b"<html><script>alert(1)</script></html>", "promos.error.image_type"),
        (b"GIF89a" + b"\x00" * 100, "promos.error.image_type"),
        (b"%PDF-1.7\n", "promos.error.image_type"),
        (b"\xff\xd8\xff" + b"\x00" * (MAX_UPLOAD_BYTES), "promos.error.image_too_big"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "promos.error.image_damaged"),
    ],
)
def test_uploads_that_are_not_usable_pictures_are_rejected(data: bytes, key: str) -> None:
    with pytest.raises(ImageRejected) as info:
        reencode(data)
    assert info.value.key == key


def test_a_header_claiming_huge_dimensions_is_refused_before_decoding() -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(ImageRejected) as info:
        reencode(b"\x89PNG\r\n\x1a\n" + chunk)
    assert info.value.key == "promos.error.image_pixels"


def test_a_truncated_jpeg_is_damaged() -> None:
    with pytest.raises(ImageRejected) as info:
        reencode(_picture(200, 100)[:300])
    assert info.value.key == "promos.error.image_damaged"


# ------------------------------------------------------------------------- portal: images ---


async def test_portal_serves_promo_images_and_nothing_else(tmp_path: Path) -> None:
    images = PromoImages(tmp_path / "promos")
    await images.store(7, await images.prepare(_picture(64, 48)))
    # The portal's own base (its templates and static folder), with only the promotion routes added.
    app = base_app(make_config(tmp_path), "appliance.portal", errors.MESSAGES, client_max_size=1024)
    install_promo_routes(app, images)
    async with serve(app) as client:
        resp = await client.get("/promo-images/7.jpg")
        body = await resp.read()
        assert resp.status == 200 and resp.content_type == "image/jpeg" and body.startswith(b"\xff\xd8")
        assert "max-age" in resp.headers["Cache-Control"]
        for path in ("/promo-images/8.jpg", "/promo-images/x.jpg", "/promo-images/..%2Fappliance.db"):
            assert (await client.get(path)).status == 404, path


def test_partial_renders_promos_inert_and_without_inline_styles() -> None:
    env = make_environment("appliance.portal", merge(errors.MESSAGES, PORTAL_MESSAGES), MOSCOW)
    promo_type = type("P", (), {})
    promo = promo_type()
    promo.title, promo.image_url = '<img src=x onerror="alert(1)">Кофе', "/promo-images/3.jpg?v=abc"
    promo.text_html = sanitize_html("<p>Скидка</p><script>alert(1)</script>")
    html = env.from_string('{% include "_promos.html" %}').render(lang="ru", promos=[promo])
    assert "Акции магазина" in html and "<p>Скидка</p>" in html
    assert "&lt;img src=x" in html and "<script" not in html and 'onerror="' not in html
    assert 'src="/promo-images/3.jpg?v=abc"' in html and 'alt=""' in html
    assert "style=" not in html
    assert env.from_string('{% include "_promos.html" %}').render(lang="en", promos=[]).strip() == ""


# ------------------------------------------------------------------------------- console ---


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    images = PromoImages(tmp_path / "promos")

    def features(sessions, cfg):  # type: ignore[no-untyped-def]
        return [promotions_console_feature(PromotionStore(sessions), images, MOSCOW)]

    async with console_with(tmp_path, features) as c:
        yield c


async def _stored(console: Console) -> list[Promotion]:
    """What is in the database now (a fresh store: the console's own caches its reads)."""
    return await PromotionStore(console.sessions).list()


def _form(token: str | None, **fields: object) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if token is not None:
        form.add_field("csrf_token", token)
    for name, value in fields.items():
        if isinstance(value, bytes):
            form.add_field(name, io.BytesIO(value), filename="poster.jpg", content_type="image/jpeg")
        else:
            form.add_field(name, str(value))
    return form


async def test_console_create_with_image_needs_csrf_and_reaches_the_portal(console: Console, tmp_path: Path) -> None:
    token = await console.sign_in()
    fields = {
        "title": "Кофе -20%",
        "text": "<p>До конца недели</p><script>x()</script>",
        "first_day": "2026-11-27",
        "last_day": "2026-11-30",
        "action": "save",
        "image": _picture(2400, 1600),
    }

    refused = await console.client.post("/promos/new", data=_form(None, **fields), allow_redirects=False)
    assert refused.status == 403 and await _stored(console) == []

    resp = await console.client.post("/promos/new", data=_form(token, **fields), allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/promos"
    (promo,) = await _stored(console)
    assert promo.text_html == "<p>До конца недели</p>" and promo.image_url is not None
    # Whole days in Moscow time: from 27.11 00:00 (21:00 UTC the day before) to the end of 30.11.
    assert promo.valid_from == datetime(2026, 11, 26, 21, 0, tzinfo=UTC)
    assert promo.valid_to == datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
    stored = (tmp_path / "promos" / f"{promo.id}.jpg").read_bytes()
    assert max(_decoded(stored).shape[:2]) == MAX_SIDE

    page = await (await console.client.get("/promos")).text()
    assert "Кофе -20%" in page and f"/promos/{promo.id}/image.jpg" in page
    assert "2026-11-27 — 2026-11-30" in page
    image = await console.client.get(f"/promos/{promo.id}/image.jpg")
    assert image.status == 200 and await image.read() == stored


async def test_only_the_upload_forms_take_big_bodies(console: Console) -> None:
    # The picture upload needs megabytes; the console's other forms, and above all the public
    # sign-in form, get the console's small limit whether the size is announced or not.
    big = "x" * (200 * 1024)

    async def streamed() -> AsyncIterator[bytes]:
        yield f"username=a&password={big}".encode()

    announced = await console.client.post("/login", data={"username": "a", "password": big})
    assert announced.status == 413 and "Слишком много данных" in await announced.text()
    chunked = await console.client.post(
        "/login", data=streamed(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert chunked.status == 413
    token = await console.sign_in()
    other = await console.client.post("/logout", data={"csrf_token": token, "padding": big}, allow_redirects=False)
    assert other.status == 413
    picture = _picture(1600, 1200)
    assert len(picture) > 4 * len(big)
    fields = {"title": "Большая картинка", "first_day": "2026-11-27", "action": "save", "image": picture}
    resp = await console.client.post("/promos/new", data=_form(token, **fields), allow_redirects=False)
    assert resp.status == 303 and len(await _stored(console)) == 1


async def test_console_preview_shows_sanitised_text_and_saves_nothing(console: Console) -> None:
    token = await console.sign_in()
    resp = await console.client.post(
        "/promos/new",
        data=_form(token, title="Чай", text="<p>Новинка</p><img src=x onerror=alert(1)>", action="preview"),
    )
    html = await resp.text()
    # The typed text stays in the textarea (escaped); only the preview renders it.
    assert resp.status == 200 and "<p>Новинка</p>" in html and "<img" not in html
    assert await _stored(console) == []


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (b"<html>not a picture</html>", "Это не картинка JPEG, PNG или WebP"),
        (b"\xff\xd8\xff" + b"\x00" * MAX_UPLOAD_BYTES, "Файл больше 8 МБ"),
    ],
)
async def test_console_rejects_bad_uploads_and_keeps_the_form(console: Console, upload: bytes, message: str) -> None:
    token = await console.sign_in()
    resp = await console.client.post(
        "/promos/new", data=_form(token, title="Плакат", text="текст", action="save", image=upload)
    )
    html = await resp.text()
    assert resp.status == 400 and message in html and 'value="Плакат"' in html
    assert await _stored(console) == []


async def test_console_edit_reorder_remove_image_and_delete(console: Console, tmp_path: Path) -> None:
    token = await console.sign_in()
    for title in ("Первая", "Вторая"):
        await console.client.post(
            "/promos/new", data=_form(token, title=title, text="", action="save", image=_picture(80, 60))
        )
    first, second = await _stored(console)
    edit = await console.client.get(f"/promos/{first.id}")
    assert edit.status == 200 and 'value="Первая"' in await edit.text()

    resp = await console.client.post(
        f"/promos/{first.id}",
        data=_form(token, title="Первая, новая", text="<b>да</b>", action="save", remove_image="1"),
        allow_redirects=False,
    )
    assert resp.status == 303
    assert not (tmp_path / "promos" / f"{first.id}.jpg").exists()
    await console.client.post(f"/promos/{second.id}/move", data={"csrf_token": token, "direction": "up"})
    assert [p.title for p in await _stored(console)] == ["Вторая", "Первая, новая"]
    assert [p.image_url is None for p in await _stored(console)] == [False, True]

    await console.client.post(f"/promos/{second.id}/delete", data={"csrf_token": token})
    assert [p.id for p in await _stored(console)] == [first.id]
    assert not (tmp_path / "promos" / f"{second.id}.jpg").exists()
    assert (await console.client.get(f"/promos/{second.id}")).status == 404
    assert (await console.client.post(f"/promos/{second.id}/move", data={"csrf_token": token})).status == 404


async def test_viewers_see_promotions_but_cannot_change_them(console: Console) -> None:
    admin_token = await console.sign_in()
    await console.client.post("/promos/new", data=_form(admin_token, title="Акция", text="", action="save"))
    await console.client.post("/logout", data={"csrf_token": admin_token})
    token = await console.sign_in(VIEWER, VIEWER_PASSWORD)
    page = await console.client.get("/promos")
    html = await page.text()
    assert page.status == 200 and "Акция" in html and "/promos/new" not in html and form_tokens(html) == {token}
    (promo,) = await _stored(console)
    for path in ("/promos/new", f"/promos/{promo.id}"):
        assert (await console.client.get(path)).status == 403
    resp = await console.client.post(f"/promos/{promo.id}/delete", data={"csrf_token": token})
    assert resp.status == 403 and "администратор" in await resp.text()
    assert len(await _stored(console)) == 1


async def test_promotions_need_sign_in(console: Console) -> None:
    for path in ("/promos", "/promos/new", "/promos/1/image.jpg"):
        resp = await console.client.get(path, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == f"/login?next={path}"
