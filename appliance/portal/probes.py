"""Answers to requests the gateway diverted to the portal: operating systems' captive-portal probes
and guests' attempts to open other sites over plain HTTP.

Before login every such request gets a 302 to the portal's sign-in page; that redirect is what
makes a phone open its login window. A site's address (not a probe's) rides along as `dst`, shown
as a link after login. After login the gateway stops diverting the device, but a probe that
still arrives (a race, a cached route) gets the answer meaning "online", so that the phone does
not reopen the login window; any other address gets the portal's page of the connected guest.
The answers are cheap: one identify call and one indexed query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

from appliance.portal.hosts import addressed_to_us, portal_base
from appliance.portal.keys import SYSTEM


@dataclass(frozen=True)
class Probe:
    status: int
    body: str = ""
    content_type: str = "text/plain"

    def response(self) -> web.Response:
        if self.status == 204:
            return web.Response(status=204)
        return web.Response(status=self.status, text=self.body, content_type=self.content_type)


APPLE: Final = Probe(200, "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>", "text/html")
NO_CONTENT: Final = Probe(204)
NETWORK_MANAGER: Final = Probe(200, "NetworkManager is online\n")

PROBES: Final[dict[str, Probe]] = {
    # Apple iOS and macOS: captive.apple.com, www.apple.com.
    "/hotspot-detect.html": APPLE,
    "/library/test/success.html": APPLE,
    # Android and ChromeOS: connectivitycheck.gstatic.com, clients3.google.com, vendors' copies.
    "/generate_204": NO_CONTENT,
    "/gen_204": NO_CONTENT,
    # Windows: www.msftconnecttest.com, www.msftncsi.com.
    "/connecttest.txt": Probe(200, "Microsoft Connect Test"),
    "/ncsi.txt": Probe(200, "Microsoft NCSI"),
    # Firefox: detectportal.firefox.com.
    "/canonical.html": Probe(
        200,
        '<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>',
        "text/html",
    ),
    "/success.txt": Probe(200, "success\n"),
    # NetworkManager: nmcheck.gnome.org, network-test.debian.org, ping.archlinux.org; Fedora.
    "/check_network_status.txt": NETWORK_MANAGER,
    "/nm": NETWORK_MANAGER,
    "/nm-check.txt": NETWORK_MANAGER,
    "/static/hotspot.txt": Probe(200, "OK"),
}


def _found(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


async def answer_diverted(request: web.Request) -> web.StreamResponse:
    system = request.app[SYSTEM]
    probe = PROBES.get(request.path)
    base = portal_base(request, system.address)
    device = await system.gateway.identify(request)
    if device is not None and await system.identification.active(device) is not None:
        return probe.response() if probe is not None else _found(f"{base}/")
    if probe is None and request.method == "GET":
        return _found(f"{base}/?{urlencode({'dst': str(request.url)})}")
    return _found(f"{base}/")


@web.middleware
async def diverted_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if addressed_to_us(request, request.app[SYSTEM].address):
        return await handler(request)
    return await answer_diverted(request)
