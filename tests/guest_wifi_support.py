"""Helpers for the console sections of the guest Wi-Fi (promotions, vouchers): a real console over
HTTP with a migrated SQLite database, an administrator and a viewer account."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.cameras.status import StatusBoard
from appliance.config import Config
from appliance.console.app import create_console_app
from appliance.console.features import ConsoleFeature
from appliance.storage.db import create_engine, make_sessionmaker
from tests.web_support import csrf_token, login, make_config, serve, user_store

Client = TestClient[Any, Any]
VIEWER = "viktor"
VIEWER_PASSWORD = "viewer password 9"
_ALL_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    client: Client
    sessions: async_sessionmaker[AsyncSession]
    cfg: Config

    async def sign_in(self, username: str | None = None, password: str | None = None) -> str:
        """Sign in (the administrator by default); returns the session's CSRF token."""
        kwargs = {"username": username, "password": password} if username and password else {}
        resp = await login(self.client, **kwargs)
        assert resp.status == 303
        return csrf_token(await (await self.client.get("/")).text())


@asynccontextmanager
async def console_with(
    tmp_path: Path, features: Callable[[async_sessionmaker[AsyncSession], Config], Sequence[ConsoleFeature]]
) -> AsyncIterator[Console]:
    cfg = make_config(tmp_path)
    async with user_store(cfg) as users:
        await users.add(VIEWER, VIEWER_PASSWORD, role="viewer")
        engine = create_engine(cfg.database_url)
        try:
            sessions = make_sessionmaker(engine)
            app = create_console_app(cfg, users, StatusBoard(), list, features=features(sessions, cfg))
            async with serve(app) as client:
                yield Console(client, sessions, cfg)
        finally:
            await engine.dispose()


def form_tokens(html: str) -> set[str]:
    return set(_ALL_CSRF.findall(html))
