"""What the SMS provider stand-ins (SMS.ru, SMSC.ru) share: a real HTTP server on 127.0.0.1,
the messages it accepted, and switches that make it fail the way the real service does.

The stand-ins are the test peers for internet services the tests cannot reach; the appliance's
production clients talk to them over HTTP. Besides the provider's API they answer a few
control requests under /_standin/ (not part of any provider), so that a test driving the
appliance in another process or network namespace can read the code a guest was sent:

- GET  /_standin/messages?to=+79991234567  -> {"messages": [{"to", "text", "sender", "id"}...]}
- POST /_standin/mode?mode=ok|down|busy|slow|garbage
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self, get_args

from aiohttp import web

Mode = Literal["ok", "down", "busy", "slow", "garbage"]
"""ok: works; down: HTTP 503 from a load balancer; busy: the provider's own "try later" error;
slow: answers only after `slow_s`; garbage: an HTML page with status 200 (a captive proxy)."""
MODES: tuple[Mode, ...] = get_args(Mode)

CODE = re.compile(r"\b(\d{4,8})\b")


@dataclass(frozen=True)
class Message:
    to: str
    """As E.164 with the plus sign."""
    text: str
    sender: str | None
    id: str


def e164(number: str) -> str:
    return "+" + number.strip().lstrip("+")


class StandIn:
    """Base of a provider stand-in; subclasses add the provider's routes in `routes()`."""

    slow_s: ClassVar[float] = 5.0

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.mode: Mode = "ok"
        self.requests = 0
        self.query_strings: list[str] = []
        """The address part of every request: the appliance must keep keys and codes out of it."""
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.port = 0

    # ------------------------------------------------------------------ what tests read ---
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sent_to(self, number: str) -> list[Message]:
        return [m for m in self.messages if m.to == e164(number)]

    def last_text(self, number: str) -> str | None:
        sent = self.sent_to(number)
        return sent[-1].text if sent else None

    def last_code(self, number: str) -> str | None:
        """The one-time code in the last message to `number` (its first 4–8 digit group)."""
        text = self.last_text(number)
        match = CODE.search(text) if text else None
        return match.group(1) if match else None

    def next_id(self) -> int:
        return next(self._ids)

    # ------------------------------------------------------------------ failure switches ---
    async def failure(self) -> web.Response | None:
        """The answer the current mode forces, if any; None means: answer as the provider."""
        self.requests += 1
        if self.mode == "down":
            return web.Response(status=503, text="<html><body>503 Service Unavailable</body></html>")
        if self.mode == "garbage":
            return web.Response(text="<html><body>Please log in to the hotel Wi-Fi</body></html>")
        if self.mode == "slow":
            # Slow, but not past the end of the test: stopping the server ends the wait.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.slow_s)
        return None

    async def fields(self, request: web.Request) -> dict[str, str]:
        """The request's fields, from the query and a form body alike (the providers accept both)."""
        self.query_strings.append(request.query_string)
        fields = dict(request.query)
        if request.method == "POST":
            fields.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        return fields

    # ----------------------------------------------------------------------- the server ---
    def routes(self) -> web.RouteTableDef:
        raise NotImplementedError

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_routes(self.routes())
        app.router.add_get("/_standin/messages", self._messages)
        app.router.add_post("/_standin/mode", self._set_mode)
        return app

    async def _messages(self, request: web.Request) -> web.Response:
        to = request.query.get("to")
        shown = self.sent_to(to) if to else self.messages
        return web.json_response({"messages": [m.__dict__ for m in shown]})

    async def _set_mode(self, request: web.Request) -> web.Response:
        mode = request.query.get("mode", "")
        if mode not in MODES:
            return web.json_response({"error": f"mode must be one of {', '.join(MODES)}"}, status=400)
        self.mode = mode  # type: ignore[assignment]
        return web.json_response({"mode": mode})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @classmethod
    @asynccontextmanager
    async def running(cls, **kwargs: Any) -> AsyncIterator[Self]:
        standin = cls(**kwargs)
        await standin.start()
        try:
            yield standin
        finally:
            await standin.stop()


def serve_forever(standin: StandIn, port: int) -> None:
    """Run a stand-in in its own process (another network namespace): prints "ready PORT"."""

    async def main() -> None:
        # All addresses: the stand-in may serve a test network namespace.
        await standin.start("0.0.0.0", port)
        print("ready", standin.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
