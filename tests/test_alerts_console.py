"""The console's alerts page over real HTTP: delivery per channel, a refusal with the provider's
words and its retry button, the pause, camera suspensions, test alerts, and who may press them."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from appliance.cameras.events import event_id_for
from appliance.cameras.messages import EventOpened
from tests.alerts_support import (
    VIEWER,
    VIEWER_PASSWORD,
    RunningAlerts,
    WebhookReceiver,
    alerts_config,
    console_with_alerts,
    until,
    webhook_channel,
    webhook_receiver,
)
from tests.web_support import ADMIN, csrf_token, login

Client = TestClient[Any, Any]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Client, RunningAlerts, WebhookReceiver]]:
    async with webhook_receiver() as rx:
        cfg = alerts_config(tmp_path, [webhook_channel(rx.url)])
        async with console_with_alerts(cfg) as (client, alerts):
            yield client, alerts, rx


async def signed_in(client: Client, username: str = ADMIN, password: str | None = None) -> str:
    resp = await (login(client) if password is None else login(client, username, password))
    assert resp.status == 303
    return csrf_token(await (await client.get("/alerts")).text())


async def page(client: Client) -> str:
    resp = await client.get("/alerts")
    assert resp.status == 200
    return html.unescape(await resp.text())


async def post(client: Client, path: str, token: str, **form: str) -> Any:
    return await client.post(path, data={"csrf_token": token, **form}, allow_redirects=False)


async def test_a_refusal_is_shown_with_the_providers_words_and_can_be_sent_again(setup: Any) -> None:
    client, alerts, rx = setup
    rx.answer = (401, {})
    alerts.bus.publish(
        EventOpened("kassa", event_id_for("kassa", datetime.now(UTC)), "motion", datetime.now(UTC), True)
    )
    await until(lambda: _failed(alerts), 10, "the refusal")
    token = await signed_in(client)
    text = await page(client)
    assert "HTTP 401 Unauthorized: Unauthorized: bad token" in text
    assert "Не доставлено: 1" in text and "движение · Касса · снимок" in text
    alert_id = re.search(r'name="alert_id" value="(\d+)"', text)
    assert alert_id is not None

    rx.answer = (200, {})
    resp = await post(client, "/alerts/retry", token, alert_id=alert_id.group(1))
    assert resp.status == 303 and resp.headers["Location"] == "/alerts?done=retry"
    await rx.wait_for(1)
    await until(lambda: _no_failures(client), 10, "the page to show the delivery")
    text = await page(client)
    assert "Доставлено: 1" in text and "Оповещения отправляются снова." not in text  # ?done only after the form


async def _failed(alerts: RunningAlerts) -> bool:
    return bool((await alerts.service.overview()).failures)


async def _no_failures(client: Client) -> bool:
    return "Отказов нет." in await page(client)


async def test_pause_suspend_and_test_alert(setup: Any) -> None:
    client, alerts, rx = setup
    token = await signed_in(client)
    assert "Оповещения включены." in await page(client)

    resp = await post(client, "/alerts/pause", token, hours="2")
    assert resp.headers["Location"] == "/alerts?done=paused"
    text = await page(client)
    assert "Оповещения о камерах на паузе до" in text and "Снять паузу" in text
    assert alerts.service.pauses.muted("vhod", datetime.now(UTC)) == "paused"
    await post(client, "/alerts/pause", token, action="resume")
    assert alerts.service.pauses.muted("vhod", datetime.now(UTC)) is None
    await post(client, "/alerts/pause", token, hours="")
    assert "пока вы её не снимете" in await page(client)
    await post(client, "/alerts/pause", token, action="resume")

    resp = await post(client, "/alerts/suspend", token, camera="kassa", minutes="30")
    assert resp.headers["Location"] == "/alerts?done=suspended"
    assert alerts.service.pauses.muted("kassa", datetime.now(UTC)) == "suspended"
    assert "выключены до" in await page(client)
    assert (await post(client, "/alerts/suspend", token, camera="kassa", minutes="7")).status == 400
    assert (await post(client, "/alerts/suspend", token, camera="sklad", minutes="30")).status == 400
    await post(client, "/alerts/suspend", token, camera="kassa", action="resume")
    assert alerts.service.pauses.muted("kassa", datetime.now(UTC)) is None

    resp = await post(client, "/alerts/test", token, channel="hook")
    assert resp.headers["Location"] == "/alerts?done=test"
    (got,) = await rx.wait_for(1)
    assert got.doc["kind"] == "test" and "канала «hook»" in got.doc["body"]
    assert (await post(client, "/alerts/test", token, channel="nope")).status == 400


async def test_viewers_see_but_do_not_change_and_forms_need_their_token(setup: Any) -> None:
    client, alerts, rx = setup
    token = await signed_in(client, VIEWER, VIEWER_PASSWORD)
    text = await page(client)
    assert "Менять настройки оповещений может только администратор." in text
    assert 'action="/alerts/pause"' not in text
    for path, form in (("/alerts/pause", {"hours": "2"}), ("/alerts/test", {"channel": "hook"})):
        assert (await post(client, path, token, **form)).status == 403
    assert alerts.service.pauses.muted("kassa", datetime.now(UTC)) is None
    await client.post("/logout", data={"csrf_token": token})
    admin_token = await signed_in(client)
    assert (await post(client, "/alerts/pause", "forged-token", hours="2")).status == 403
    assert admin_token != "forged-token" and alerts.service.pauses.muted("kassa", datetime.now(UTC)) is None
    assert rx.attempts == []
