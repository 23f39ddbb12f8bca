"""Shared pieces of the alert tests: a real HTTP webhook receiver, settings with short back-offs, the alerts
side as the daemon builds it, and the console with its sections."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from appliance.alerts.channels.webhook import ALERT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from appliance.alerts.console import SERVICE
from appliance.alerts.service import AlertsService
from appliance.alerts.system import build_alerts
from appliance.bus import EventBus
from appliance.cameras.status import StatusBoard
from appliance.config import Config, parse_config
from appliance.console.app import create_console_app
from appliance.features import Built
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.migrate import upgrade
from tests.gst_peer import free_port
from tests.web_support import serve, user_store

SECRET = "webhook-test-secret-0123456789"
FAST_RETRY = {"retry_initial_s": 0.05, "retry_max_s": 0.2, "send_timeout_s": 5.0}
"""Back-offs of milliseconds: an outage of minutes is simulated in a second."""
STOP_TIMEOUT_S = 10.0
VIEWER, VIEWER_PASSWORD = "boris", "viewer password 1"


@dataclass
class Received:
    alert_id: str
    doc: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    at: float
    """time.monotonic() when it arrived."""


@dataclass
class WebhookReceiver:
    """An aiohttp server on 127.0.0.1 in place of the owner's webhook endpoint.

    `script`, then `answer`, decide each reply: (status, headers); `received` holds what was accepted (2xx),
    `attempts` every request. `go_down()` closes the listening socket (connections are refused),
    `come_back()` listens again on the same port."""

    port: int = field(default_factory=free_port)
    answer: tuple[int, dict[str, str]] = (200, {})
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    """Answers given first, one per request, before `answer`."""
    received: list[Received] = field(default_factory=list)
    attempts: list[tuple[float, int, str]] = field(default_factory=list)
    """(time.monotonic(), status answered, alert id) per request."""
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status, headers = self.script.pop(0) if self.script else self.answer
        alert_id = request.headers.get(ALERT_ID_HEADER, "")
        self.attempts.append((time.monotonic(), status, alert_id))
        if status < 300:
            self.received.append(Received(alert_id, json.loads(body), dict(request.headers), body, time.monotonic()))
        text = "ok" if status < 300 else {401: "Unauthorized: bad token", 429: "slow down"}.get(status, "unavailable")
        return web.Response(status=status, text=text, headers=headers)

    async def come_back(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def go_down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Until `count` alerts were accepted (the time each arrived is in `Received.at`)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} alerts arrived within {timeout} s")
            await asyncio.sleep(0.01)
        return self.received


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.come_back()
    try:
        yield receiver
    finally:
        await receiver.go_down()


def signed_correctly(r: Received, secret: str = SECRET) -> bool:
    return verify(secret.encode(), r.headers[TIMESTAMP_HEADER], r.body, r.headers[SIGNATURE_HEADER])


def webhook_channel(url: str, channel_id: str = "hook", **extra: Any) -> dict[str, Any]:
    return {"id": channel_id, "kind": "webhook", "url": url, "secret": SECRET, **extra}


def alerts_config(
    tmp_path: Path,
    channels: list[dict[str, Any]],
    *,
    db_url: str | None = None,
    kassa_zones: list[list[list[float]]] | None = None,
    **alerts: Any,
) -> Config:
    """A config with two cameras and the given channels, on `db_url` (default SQLite in tmp_path)."""
    return parse_config(
        {
            "appliance": {"data_dir": str(tmp_path), "name": "Магазин у дома", "timezone": "Europe/Moscow"},
            "database": {"url": db_url or f"sqlite+aiosqlite:///{tmp_path / 'appliance.db'}"},
            "alerts": {"console_url": "https://shop.example.org", "channels": channels, **FAST_RETRY, **alerts},
            "cameras": [
                {"id": "kassa", "name": "Касса", "main_url": "rtsp://127.0.0.1:9/kassa", "zones": kassa_zones or []},
                {"id": "vhod", "name": "Вход", "main_url": "rtsp://127.0.0.1:9/vhod"},
            ],
        }
    )


@dataclass
class RunningAlerts:
    """The alerts side as the daemon builds it (build_alerts), its components run as tasks."""

    bus: EventBus
    sessions: async_sessionmaker[AsyncSession]
    built: Built
    tasks: dict[str, asyncio.Task[None]]

    @property
    def service(self) -> AlertsService:
        """The service behind the console's buttons, as the console's setup hands it over."""
        app = web.Application()
        (feature,) = [f for f in self.built.console if f.name == "alerts"]
        assert feature.setup is not None
        feature.setup(app)
        return app[SERVICE]

    async def stop(self) -> None:
        """Cancel the components; one that had crashed (the daemon would restart it) fails the test."""
        crashed = [t for t in self.tasks.values() if t.done() and not t.cancelled() and t.exception()]
        for task in self.tasks.values():
            task.cancel()
        _, stuck = await asyncio.wait(self.tasks.values(), timeout=STOP_TIMEOUT_S)
        assert not stuck, "components did not stop: " + "; ".join(_awaiting(t) for t in stuck)
        if crashed:
            raise AssertionError(f"component {crashed[0].get_name()} crashed") from crashed[0].exception()


@asynccontextmanager
async def running_alerts(cfg: Config, engine: AsyncEngine) -> AsyncIterator[RunningAlerts]:
    sessions = make_sessionmaker(engine)
    bus = EventBus()
    built = await build_alerts(cfg, sessions, bus)
    tasks = {name: asyncio.create_task(_run(component), name=name) for name, component, _ in built.components}
    await asyncio.sleep(0)  # the producer subscribes to the bus on its first step
    running = RunningAlerts(bus, sessions, built, tasks)
    try:
        yield running
    finally:
        await running.stop()


@asynccontextmanager
async def console_with_alerts(cfg: Config) -> AsyncIterator[tuple[TestClient[Any, Any], RunningAlerts]]:
    """The console over real HTTP with the sections build_alerts adds, the alerts side running, and two
    accounts: the admin of tests.web_support and a viewer (VIEWER)."""
    engine = create_engine(cfg.database_url)
    await upgrade(engine)
    try:
        async with user_store(cfg) as users, running_alerts(cfg, engine) as alerts:
            await users.add(VIEWER, VIEWER_PASSWORD, role="viewer")
            app = create_console_app(cfg, users, StatusBoard(), list, features=alerts.built.console)
            async with serve(app) as client:
                yield client, alerts
    finally:
        await engine.dispose()


def _awaiting(task: asyncio.Task[None]) -> str:
    """The task's name and the chain of coroutines it is stuck in."""
    chain, coro = [], task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None)
        chain.append(f"{getattr(coro, '__qualname__', coro)}:{frame.f_lineno if frame else '?'}")
        coro = getattr(coro, "cr_await", None)
    return f"{task.get_name()} at {' > '.join(chain)}"


async def _run(component: Callable[[], Awaitable[None]]) -> None:
    await component()


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
