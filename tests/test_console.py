"""The staff console over real HTTP, with a real SQLite user store (migrated) and argon2."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from appliance import __version__
from appliance.alerts.inbox import DemoInbox
from appliance.cameras.status import CameraState, StatusBoard
from appliance.config import Config
from appliance.console.app import create_console_app
from appliance.console.auth import LOGIN_CSRF_COOKIE, LOGIN_LIMIT, SESSION_COOKIE
from appliance.console.keys import SESSIONS
from appliance.console.sessions import SessionStore
from appliance.storage.users import UserStore
from appliance.supervisor import ComponentState, ComponentStatus
from appliance.web.ratelimit import Limit
from tests.web_support import (
    ADMIN,
    ADMIN_PASSWORD,
    assert_security_headers,
    csrf_token,
    login,
    make_config,
    self_signed_server_context,
    serve,
    user_store,
)

Client = TestClient[Any, Any]
MOSCOW = ZoneInfo("Europe/Moscow")
# 20:40 UTC is 23:40 in Moscow (UTC+3 all year).
SINCE = datetime(2026, 11, 27, 20, 40, tzinfo=UTC)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def users(cfg: Config) -> AsyncIterator[UserStore]:
    async with user_store(cfg) as store:
        yield store


@pytest.fixture
def board() -> StatusBoard:
    board = StatusBoard()
    board.register("front", "Касса")
    board.update("front", state=CameraState.ONLINE, since=SINCE, fps=12.5, width=1920, height=1080, codec="h264")
    board.register("back", "Склад")
    board.update(
        "back",
        state=CameraState.RECONNECTING,
        since=SINCE,
        last_error="no answer from the camera: check its power and network cable",
    )
    return board


@pytest.fixture
def components() -> list[ComponentStatus]:
    return [
        ComponentStatus("camera:front", ComponentState.RUNNING, 0, None, SINCE),
        ComponentStatus("camera:back", ComponentState.BACKOFF, 3, "OSError: boom", SINCE),
    ]


App = Callable[..., Any]


@pytest.fixture
def make_app(cfg: Config, users: UserStore, board: StatusBoard, components: list[ComponentStatus]) -> App:
    def make(**kwargs: Any) -> Any:
        return create_console_app(cfg, users, board, lambda: components, **kwargs)

    return make


@pytest.fixture
async def client(make_app: App) -> AsyncIterator[Client]:
    async with serve(make_app()) as c:
        yield c


async def logged_in(client: Client) -> str:
    """Sign in; returns the session's CSRF token read from the dashboard."""
    resp = await login(client)
    assert resp.status == 303
    dash = await client.get("/")
    return csrf_token(await dash.text())


# ----------------------------------------------------------------------------- sign-in ---


async def test_pages_need_sign_in(client: Client) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"


async def test_a_failed_sign_in_keeps_where_to_go_afterwards(client: Client) -> None:
    form = await client.get("/login?next=/events/ev-2")
    token = csrf_token(await form.text())
    data = {"csrf_token": token, "username": ADMIN, "next": "/events/ev-2"}
    wrong = await client.post("/login", data={**data, "password": "wrong"}, allow_redirects=False)
    assert wrong.status == 200 and 'name="next" value="/events/ev-2"' in await wrong.text()
    right = await client.post("/login", data={**data, "password": ADMIN_PASSWORD}, allow_redirects=False)
    assert right.headers["Location"] == "/events/ev-2"


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "/login", "events/1",
     "/x\r\nSet-Cookie: a=b", "/" + "a" * 3000],
)  # fmt: skip
async def test_sign_in_never_leads_off_the_console(client: Client, target: str) -> None:
    form = await client.get("/login", params={"next": target})
    assert 'name="next"' not in await form.text()
    token = csrf_token(await form.text())
    resp = await client.post(
        "/login",
        data={"csrf_token": token, "username": ADMIN, "password": ADMIN_PASSWORD, "next": target},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/"


async def test_login_succeeds_and_sets_a_strict_httponly_session_cookie(client: Client, cfg: Config) -> None:
    resp = await login(client)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    cookie = resp.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert not cookie["secure"]  # plain HTTP here; see the HTTPS test
    assert cookie["path"] == "/"
    assert int(cookie["max-age"]) == cfg.console.session_hours * 3600
    assert len(cookie.value) >= 40
    dash = await client.get("/")
    assert dash.status == 200 and "Вы вошли как anna" in await dash.text()


async def test_session_cookie_is_secure_over_https(make_app: App, tmp_path: Path) -> None:
    async with serve(make_app(), server_ssl=self_signed_server_context(tmp_path)) as c:
        assert c.make_url("/").scheme == "https"
        form = await c.get("/login", ssl=False)
        assert form.cookies[LOGIN_CSRF_COOKIE]["secure"] is True
        resp = await c.post(
            "/login",
            ssl=False,
            allow_redirects=False,
            data={"csrf_token": csrf_token(await form.text()), "username": ADMIN, "password": ADMIN_PASSWORD},
        )
        assert resp.status == 303
        assert resp.cookies[SESSION_COOKIE]["secure"] is True


async def test_wrong_password_and_unknown_user_get_the_same_generic_answer(client: Client) -> None:
    wrong = await login(client, ADMIN, "not the password")
    unknown = await login(client, "nobody", "not the password")
    for resp in (wrong, unknown):
        assert resp.status == 200
        assert SESSION_COOKIE not in resp.cookies
        assert "Неверное имя пользователя или пароль" in await resp.text()
    still_out = await client.get("/", allow_redirects=False)
    assert still_out.status == 303


async def test_empty_fields_are_asked_for(client: Client) -> None:
    resp = await login(client, ADMIN, "")
    assert "Введите имя пользователя и пароль" in await resp.text()


async def test_usernames_are_case_insensitive_and_typed_name_is_kept_on_failure(client: Client) -> None:
    failed = await login(client, "Anna", "wrong")
    assert 'value="Anna"' in await failed.text()
    ok = await login(client, "ANNA", ADMIN_PASSWORD)
    assert ok.status == 303


async def test_signed_in_user_is_sent_from_login_to_dashboard(client: Client) -> None:
    await logged_in(client)
    resp = await client.get("/login", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"


async def test_first_run_login_page_says_how_to_create_an_account(cfg: Config, tmp_path: Path) -> None:
    empty_cfg = make_config(tmp_path / "empty")
    async with (
        user_store(empty_cfg, with_admin=False) as empty,
        serve(create_console_app(cfg, empty, StatusBoard(), list)) as c,
    ):
        page = await (await c.get("/login")).text()
    assert "appliance user add" in page


# -------------------------------------------------------------------------------- CSRF ---


async def test_login_without_or_with_a_wrong_csrf_token_is_refused(client: Client) -> None:
    await client.get("/login")  # the CSRF cookie is set, but the form field is missing or wrong
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": "щ"}):
        resp = await client.post(
            "/login", data={**data, "username": ADMIN, "password": ADMIN_PASSWORD}, allow_redirects=False
        )
        assert resp.status == 403
        text = await resp.text()
        assert "Форма устарела" in text and "обновите страницу" in text
        assert SESSION_COOKIE not in resp.cookies


async def test_csrf_page_is_in_english_for_english_readers(client: Client) -> None:
    resp = await client.post("/login?lang=en", data={"username": ADMIN, "password": ADMIN_PASSWORD})
    assert resp.status == 403 and "The form has expired" in await resp.text()


async def test_logout_with_a_wrong_csrf_token_is_refused_and_keeps_the_session(client: Client) -> None:
    await logged_in(client)
    resp = await client.post("/logout", data={"csrf_token": "forged"}, allow_redirects=False)
    assert resp.status == 403
    assert (await client.get("/", allow_redirects=False)).status == 200


async def test_the_login_form_token_cannot_be_replayed_against_a_session(client: Client) -> None:
    form = await client.get("/login")
    login_token = csrf_token(await form.text())
    await logged_in(client)
    resp = await client.post("/logout", data={"csrf_token": login_token}, allow_redirects=False)
    assert resp.status == 403


# ------------------------------------------------------------------------------ logout ---


async def test_logout_invalidates_the_session_on_the_server(client: Client) -> None:
    token = await logged_in(client)
    session_id = client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE].value
    resp = await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    assert (await client.get("/", allow_redirects=False)).status == 303
    # The old identifier, presented again by an attacker who copied it, is worthless.
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: session_id})
    replay = await client.get("/", allow_redirects=False)
    assert replay.status == 303


async def test_sessions_expire_after_the_configured_hours(make_app: App, cfg: Config) -> None:
    now = [datetime.now(UTC)]
    app = make_app()
    app[SESSIONS] = store = SessionStore(timedelta(hours=cfg.console.session_hours), clock=lambda: now[0])
    async with serve(app) as c:
        await logged_in(c)
        now[0] += timedelta(hours=cfg.console.session_hours) - timedelta(seconds=1)
        assert (await c.get("/", allow_redirects=False)).status == 200
        now[0] += timedelta(seconds=1)
        assert (await c.get("/", allow_redirects=False)).status == 303
        assert len(store) == 0


# -------------------------------------------------------------------------- rate limit ---


def _locked_time(text: str) -> str:
    match = re.search(r"Попробуйте снова после (\d\d:\d\d)", text)
    assert match, text
    return match.group(1)


async def test_failed_logins_lock_the_address_and_say_when_to_retry(client: Client) -> None:
    before = datetime.now(UTC)
    for _ in range(LOGIN_LIMIT.max_hits - 1):
        resp = await login(client, ADMIN, "wrong")
        assert resp.status == 200
    locked = await login(client, ADMIN, "wrong")
    after = datetime.now(UTC)
    assert locked.status == 429
    assert int(locked.headers["Retry-After"]) == LOGIN_LIMIT.lockout_s
    shown = _locked_time(await locked.text())
    lockout = timedelta(seconds=LOGIN_LIMIT.lockout_s)
    # Shown in Moscow time, rounded up to the minute.
    almost_a_minute = timedelta(minutes=1, microseconds=-1)
    candidates = {(t + lockout + almost_a_minute).astimezone(MOSCOW).strftime("%H:%M") for t in (before, after)}
    assert shown in candidates
    # Even the right password is refused now, and the page says so again.
    right = await login(client)
    assert right.status == 429 and SESSION_COOKIE not in right.cookies
    assert "Слишком много неудачных попыток" in await right.text()


async def test_a_locked_username_stays_locked_from_another_address(make_app: App) -> None:
    app = make_app()
    async with serve(app, source_ip="127.0.0.2") as attacker:
        for _ in range(LOGIN_LIMIT.max_hits):
            await login(attacker, ADMIN, "guess")
    async with serve(app, source_ip="127.0.0.3") as other:
        resp = await login(other)
        assert resp.status == 429
        # Another account from that address is not affected.
        text = await (await login(other, "nobody", "x" * 12)).text()
        assert "Неверное имя пользователя или пароль" in text


async def test_a_locked_address_cannot_try_other_usernames(make_app: App) -> None:
    app = make_app()
    async with serve(app, source_ip="127.0.0.4") as attacker:
        for i in range(LOGIN_LIMIT.max_hits):
            await login(attacker, f"user{i}", "guess")
        resp = await login(attacker)
        assert resp.status == 429
    async with serve(app, source_ip="127.0.0.5") as colleague:
        assert (await login(colleague)).status == 303


async def test_lockout_ends_by_itself(make_app: App) -> None:
    async with serve(make_app(login_limit=Limit(max_hits=2, window_s=60, lockout_s=0.5))) as c:
        await login(c, ADMIN, "wrong")
        assert (await login(c, ADMIN, "wrong")).status == 429
        await asyncio.sleep(0.6)
        assert (await login(c)).status == 303


async def test_a_successful_login_forgets_earlier_failures(make_app: App) -> None:
    async with serve(make_app(login_limit=Limit(max_hits=2, window_s=60, lockout_s=60))) as c:
        assert (await login(c, ADMIN, "wrong")).status == 200
        token = await logged_in(c)
        await c.post("/logout", data={"csrf_token": token})
        # Remembered, this second mistake would lock the address and the name.
        assert (await login(c, ADMIN, "wrong")).status == 200


# --------------------------------------------------------------------------- dashboard ---


async def test_dashboard_in_russian_by_default_with_moscow_times(client: Client) -> None:
    await logged_in(client)
    resp = await client.get("/")
    text = await resp.text()
    assert '<html lang="ru">' in text
    assert "Касса" in text and "Склад" in text
    assert "Работает" in text and "Нет связи" in text
    assert "Камер в работе: 1 из 2" in text
    assert "с 27.11.2026 23:40" in text
    assert "12,5 кадр/с" in text and "1920×1080" in text
    # A problem is explained with what to do, the technical text kept for the installer.
    assert "Проверьте, что у камеры есть питание" in text
    assert "no answer from the camera" in text
    # Components and their restarts.
    assert "camera:back" in text and "Сбой, скоро перезапустится сама" in text
    assert '<td data-label="Перезапуски">3</td>' in text


async def test_dashboard_in_english_on_request_and_the_choice_is_remembered(client: Client) -> None:
    await logged_in(client)
    resp = await client.get("/?lang=en")
    text = await resp.text()
    assert '<html lang="en">' in text
    assert "Online" in text and "No connection" in text and "since 27.11.2026 23:40" in text
    assert "12.5 fps" in text and "Check the camera&#39;s power" in text
    again = await (await client.get("/")).text()
    assert "Cameras online: 1 of 2" in again
    back = await (await client.get("/?lang=ru")).text()
    assert "Камер в работе" in back


async def test_browser_language_is_used_without_a_choice(client: Client) -> None:
    await logged_in(client)
    text = await (await client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9,ru;q=0.5"})).text()
    assert "Cameras online" in text


async def test_every_camera_and_component_state_is_shown_in_words(
    make_app: App, board: StatusBoard, components: list[ComponentStatus]
) -> None:
    for state in CameraState:
        board.register(f"c-{state.value}", f"cam {state.value}")
        board.update(f"c-{state.value}", state=state, last_error="detail")
    components[:] = [ComponentStatus(f"part-{s.value}", s, 1, None, None) for s in ComponentState]
    async with serve(make_app()) as c:
        await logged_in(c)
        for lang in ("ru", "en"):
            resp = await c.get(f"/?lang={lang}")
            assert resp.status == 200, lang
            text = await resp.text()
            assert "camera.state." not in text and "component.state." not in text


async def test_names_and_errors_are_escaped(make_app: App, board: StatusBoard) -> None:
    board.register("evil", '<script>alert("x")</script>')
    board.update("evil", state=CameraState.NOT_FOUND, last_error='<img src=x onerror="alert(1)">')
    async with serve(make_app()) as c:
        await logged_in(c)
        text = await (await c.get("/")).text()
    assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=" in text


async def test_passwords_in_error_texts_are_masked(make_app: App, board: StatusBoard) -> None:
    board.update("back", last_error="stream error: rtsp://admin:hunter22@10.0.0.5/1 timed out")
    async with serve(make_app()) as c:
        await logged_in(c)
        text = await (await c.get("/")).text()
    assert "hunter22" not in text and "rtsp://admin:***@10.0.0.5/1" in text


async def test_a_failing_status_source_gives_a_500_page_without_details(
    cfg: Config, users: UserStore, board: StatusBoard
) -> None:
    def broken() -> list[ComponentStatus]:
        raise RuntimeError("secret internals at /srv/x.py line 12")

    async with serve(create_console_app(cfg, users, board, broken)) as c:
        assert (await login(c)).status == 303
        resp = await c.get("/")
        text = await resp.text()
    assert resp.status == 500
    assert "Внутренняя ошибка" in text and "системный журнал" in text
    assert "secret internals" not in text and "Traceback" not in text and "RuntimeError" not in text


# ------------------------------------------------------------------- metrics and health ---

# name{label="value",...} number, with \\ \" \n escapes inside label values.
_SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?[0-9.e+]+$')


async def test_metrics_are_prometheus_text(client: Client, board: StatusBoard) -> None:
    board.register("q", 'Quote " and \\ back')
    resp = await client.get("/metrics")  # open without signing in: scrapers cannot log in
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await resp.text()
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or _SAMPLE.match(line), line
    assert 'appliance_camera_up{camera="front"} 1' in text
    assert 'appliance_camera_up{camera="back"} 0' in text
    assert 'appliance_camera_fps{camera="front"} 12.5' in text
    assert 'appliance_component_restarts_total{component="camera:back"} 3' in text
    assert 'appliance_camera_info{camera="q",name="Quote \\" and \\\\ back"} 1' in text
    assert f'appliance_info{{version="{__version__}"}} 1' in text


async def test_healthz(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "version": __version__}


# --------------------------------------------------------------------- errors, headers ---


async def test_404_page_is_in_the_readers_language(client: Client) -> None:
    ru = await client.get("/no/such/page")
    assert ru.status == 404 and "Страница не найдена" in await ru.text()
    en = await client.get("/no/such/page", headers={"Accept-Language": "en-US,en;q=0.8"})
    assert en.status == 404 and "Page not found" in await en.text()


async def test_get_on_a_form_only_address_explains_itself(client: Client) -> None:
    await logged_in(client)
    resp = await client.get("/logout")
    assert resp.status == 405 and resp.headers["Allow"] == "POST"
    assert "Страница ждёт отправки формы" in await resp.text()


async def test_oversized_posts_are_refused(client: Client) -> None:
    resp = await client.post("/login", data={"username": "x" * 100_000, "password": "y"})
    assert resp.status == 413 and "Слишком много данных" in await resp.text()


@pytest.mark.parametrize("path", ["/", "/login", "/static/console.css", "/no/such/page", "/metrics"])
async def test_security_headers_on_every_response(client: Client, path: str) -> None:
    resp = await client.get(path, allow_redirects=False)
    assert_security_headers(resp.headers)


async def test_private_pages_are_not_cached(client: Client) -> None:
    await logged_in(client)
    resp = await client.get("/")
    assert resp.headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------------------- inbox ---


async def test_inbox_exists_only_with_an_inbox(client: Client) -> None:
    await logged_in(client)
    assert (await client.get("/inbox")).status == 404
    assert "/inbox" not in await (await client.get("/")).text()


async def test_inbox_lists_alerts_newest_first_with_snapshots(make_app: App) -> None:
    inbox = DemoInbox()
    inbox.add("Движение: Касса", "Камера «Касса» заметила движение", SINCE, JPEG)
    inbox.add("<b>Склад</b>", "без снимка", SINCE + timedelta(minutes=5))
    async with serve(make_app(inbox=inbox)) as c:
        anonymous = await c.get("/inbox", allow_redirects=False)
        assert anonymous.status == 303
        assert (await c.get("/inbox/1/image", allow_redirects=False)).status == 303
        await logged_in(c)
        text = await (await c.get("/inbox")).text()
        assert text.index("&lt;b&gt;Склад&lt;/b&gt;") < text.index("Движение: Касса")
        assert "27.11.2026 23:40" in text and "27.11.2026 23:45" in text
        assert '<img src="/inbox/1/image"' in text and "/inbox/2/image" not in text
        image = await c.get("/inbox/1/image")
        assert image.status == 200 and image.content_type == "image/jpeg" and await image.read() == JPEG
        assert (await c.get("/inbox/2/image")).status == 404
        assert (await c.get("/inbox/99/image")).status == 404
