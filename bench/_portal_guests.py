"""The guests and peers of bench/portal.py, each run by it inside a network namespace (not a
benchmark of its own: `make bench` skips files starting with "_").

    python bench/_portal_guests.py guests SPEC_JSON      (guest ns) the guests; prints one JSON report
    python bench/_portal_guests.py bare HOST PORT        (gateway ns) the baseline server
    python bench/_portal_guests.py sms PORT SOCKET       (internet ns) the SMS.ru stand-in, its inbox
                                                          also on a Unix socket for the guests' phones

Every guest is one device: its own source address on its own macvlan interface (so its own MAC in
the gateway's neighbour table), its own connections and cookie jar. A guest does what a phone and
its owner do: the OS probes (Android's and Apple's, diverted to the portal), opens the sign-in
page, sends the number with the consent, reads the SMS, types the code, sees the welcome page.
Each request's time is measured from sending it to having read the whole answer.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.peers.smsru_standin import SmsRuStandIn  # noqa: E402
from tests.web_support import csrf_token  # noqa: E402

PROBES: Final = (("/generate_204", "connectivitycheck.gstatic.com"), ("/hotspot-detect.html", "captive.apple.com"))
CODE = re.compile(r"\b(\d{6})\b")
BARE_PAGE_BYTES: Final = 8000
"""About the size of the portal's sign-in page."""
UDP_INTERVAL_S: Final = "0.0005"


@dataclass
class Spec:
    portal: str
    """The portal's address, e.g. http://10.99.1.1:8081."""
    site: str
    """Any web site's address; requests to it are diverted to the portal before login."""
    guests: list[tuple[str, str]]
    """(source address, phone number) per guest."""
    arrival_s: float = 0.0
    """Guests arrive evenly spread over this time."""
    think_s: tuple[float, float] = (0.0, 0.0)
    """A person's pause before sending each form (uniform between the two)."""
    inbox: str | None = None
    """The SMS stand-in's Unix socket; None: the bare baseline (no codes are sent)."""
    udp_port: int | None = None
    """Authorise mode: guests one after another, each streaming UDP to `site`'s host:port while it
    types the code; the report has when each code was sent."""


@dataclass
class Report:
    samples: list[tuple[str, float]] = field(default_factory=list)
    """(kind, seconds): kind is probe, page or login (a form sent)."""
    flows: list[tuple[float, float]] = field(default_factory=list)
    """(first request sent, welcome page read), time.monotonic(), per guest that got through."""
    codes_sent: list[tuple[int, int]] = field(default_factory=list)
    """Authorise mode: (code sent, answer read) in time.monotonic_ns()."""
    errors: list[str] = field(default_factory=list)


class Refused(Exception):
    pass


class Guest:
    def __init__(self, spec: Spec, address: str, phone: str, report: Report, seed: int) -> None:
        self.spec, self.address, self.phone, self.report = spec, address, phone, report
        self.rng = random.Random(seed)
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(address, 0)),
            # The portal is reached by its IP address: the jar must keep cookies of IP hosts.
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self.http.close()

    async def _timed(self, kind: str, expected: int, send: Callable[[], Any]) -> tuple[str, str]:
        started = time.perf_counter()
        async with send() as resp:
            body = await resp.text()
        self.report.samples.append((kind, time.perf_counter() - started))
        if resp.status != expected:
            raise Refused(f"{kind} {resp.url.path}: {resp.status}, expected {expected}: {body[-300:]!r}")
        return body, resp.headers.get("Location", "")

    def get(self, kind: str, url: str, expected: int = 200, **kwargs: Any) -> Awaitable[tuple[str, str]]:
        return self._timed(kind, expected, lambda: self.http.get(url, allow_redirects=False, **kwargs))

    def post(self, path: str, form: dict[str, str]) -> Awaitable[tuple[str, str]]:
        url = f"{self.spec.portal}{path}"
        return self._timed("login", 303, lambda: self.http.post(url, data=form, allow_redirects=False))

    async def think(self) -> None:
        low, high = self.spec.think_s
        if high > 0:
            await asyncio.sleep(self.rng.uniform(low, high))

    async def until_code_page(self) -> str:
        """Probes, the sign-in page, the number sent; the code page's CSRF token."""
        location = ""
        for path, host in PROBES:
            _, location = await self.get("probe", f"{self.spec.site}{path}", 302, headers={"Host": host})
        page, _ = await self.get("page", location)
        await self.think()
        await self.post("/login/phone", {"phone": self.phone, "consent_pd": "yes", "csrf_token": csrf_token(page)})
        code_page, _ = await self.get("page", f"{self.spec.portal}/login/code")
        return csrf_token(code_page)

    async def read_sms(self) -> str:
        if self.spec.inbox is None:
            return "000000"
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self.spec.inbox)) as phone,
            phone.get("http://inbox/_standin/messages", params={"to": self.phone}) as resp,
        ):
            messages = (await resp.json())["messages"]
        match = CODE.search(messages[-1]["text"]) if messages else None
        if match is None:
            raise Refused(f"no code reached {self.phone}")
        return match.group(1)

    async def enter_code(self, token: str, code: str) -> None:
        await self.post("/login/code", {"code": code, "csrf_token": token})

    async def sign_in(self, start_at: float) -> None:
        await asyncio.sleep(start_at)
        started = time.monotonic()
        token = await self.until_code_page()
        code = await self.read_sms()
        await self.think()
        await self.enter_code(token, code)
        await self.get("page", f"{self.spec.portal}/welcome")
        self.report.flows.append((started, time.monotonic()))

    async def sign_in_streaming(self, udp_port: int) -> None:
        """The sign-in with this device streaming UDP towards the site, so that the receiver there
        stamps the first datagram the gateway lets through after the code was sent."""
        token = await self.until_code_page()
        code = await self.read_sms()
        host = self.spec.site.split("//")[1].split(":")[0].split("/")[0]
        sender = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.peers.udp_probe", "send", host, str(udp_port), UDP_INTERVAL_S, self.address,
            cwd=ROOT,
        )  # fmt: skip
        try:
            await asyncio.sleep(0.3)  # streaming (and dropped) before the code goes
            sent = time.monotonic_ns()
            await self.enter_code(token, code)
            self.report.codes_sent.append((sent, time.monotonic_ns()))
            await asyncio.sleep(0.3)
        finally:
            sender.kill()
            await sender.wait()
        await asyncio.sleep(0.2)  # silence: the next device's first datagram is a first one


async def run_guests(spec: Spec) -> Report:
    report = Report()
    guests = [Guest(spec, address, phone, report, seed) for seed, (address, phone) in enumerate(spec.guests)]

    async def one(guest: Guest, start_at: float) -> None:
        try:
            if spec.udp_port is not None:
                await guest.sign_in_streaming(spec.udp_port)
            else:
                await guest.sign_in(start_at)
        except (Refused, aiohttp.ClientError, TimeoutError) as exc:
            report.errors.append(f"{guest.address}: {exc!r}"[:500])

    try:
        if spec.udp_port is not None:
            for guest in guests:
                await one(guest, 0.0)
        else:
            step = spec.arrival_s / len(guests)
            await asyncio.gather(*(one(g, n * step) for n, g in enumerate(guests)))
    finally:
        await asyncio.gather(*(g.close() for g in guests))
    return report


# --------------------------------------------------------------------------------- baseline ---


def bare_app(portal: str) -> web.Application:
    """Answers every step of the sign-in like the portal, with nothing behind it: what any aiohttp
    server pays for the same requests (a probe is told where the portal is, a page is a page of the
    portal's size with a CSRF field, a form is read and answered with a redirect)."""
    page = (
        '<!doctype html><form><input type="hidden" name="csrf_token" value="bare-token"></form>' + "x" * BARE_PAGE_BYTES
    )
    own_host = portal.split("//")[1]

    @web.middleware
    async def diverted(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.host != own_host:
            raise web.HTTPFound(f"{portal}/")
        return await handler(request)  # type: ignore[no-any-return]

    async def show(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def form(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(status=303, headers={"Location": "/login/code"})

    app = web.Application(middlewares=[diverted])
    for path in ("/", "/login/code", "/welcome"):
        app.router.add_get(path, show)
    for path in ("/login/phone", "/login/code"):
        app.router.add_post(path, form)
    return app


async def serve(app: web.Application, host: str, port: int, unix: str | None = None) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    if unix is not None:
        await web.UnixSite(runner, unix).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "guests":
        raw = json.loads(args[0])
        spec = Spec(
            **{**raw, "guests": [tuple(g) for g in raw["guests"]], "think_s": tuple(raw.get("think_s", (0, 0)))}
        )
        print(json.dumps(asdict(asyncio.run(run_guests(spec)))), flush=True)
    elif mode == "bare":
        asyncio.run(serve(bare_app(f"http://{args[0]}:{args[1]}"), args[0], int(args[1])))
    elif mode == "sms":
        # Credit for every guest of every phase.
        asyncio.run(serve(SmsRuStandIn(balance=1e9).app(), "0.0.0.0", int(args[0]), unix=args[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
