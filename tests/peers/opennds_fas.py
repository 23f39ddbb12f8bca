"""A stand-in guest portal around the production `opennds` driver, run inside a namespace as the
FAS of a real openNDS:

    ip netns exec <inet> python -m tests.peers.opennds_fas --host 10.99.2.2 --port 8081 \\
        --gateway 10.99.1.1:2050 --landing http://10.99.2.2/ --faskey KEY --log identified.jsonl

The driver's routes (the router's redirect, authmon) plus "/", the login page: it identifies the
device from the router's parameters, appends what it saw to --log (one JSON line per request),
lets the device in at once (as the real portal does after a guest is identified) and sends the
browser to the address allow() returns. Prints "FAS ready" once it listens.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from aiohttp import web

from appliance.portal.gateways.base import Grant
from appliance.portal.gateways.opennds import OpenNdsGateway
from appliance.portal.gateways.settings import OpenNdsSettings


def fas_app(gateway: OpenNdsGateway, log: Path) -> web.Application:
    async def login(request: web.Request) -> web.StreamResponse:
        device = await gateway.identify(request)
        with log.open("a") as out:
            out.write(json.dumps(None if device is None else dataclasses.asdict(device)) + "\n")
        if device is None:
            return web.Response(status=403, text="NOT FROM THE ROUTER\n")
        url = await gateway.allow(device, Grant("peer-session", session_timeout_s=3600, idle_timeout_s=900))
        if url is None:
            return web.Response(text="ALLOWED\n")
        raise web.HTTPFound(url)

    app = web.Application()
    app.router.add_routes(gateway.portal_routes())
    app.router.add_get("/", login)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    for option in ("--host", "--gateway", "--landing", "--faskey", "--log"):
        parser.add_argument(option, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = OpenNdsSettings(
        faskey=args.faskey, gateway_address=args.gateway, landing_url=args.landing, fas_path="/opennds/fas"
    )
    web.run_app(
        fas_app(OpenNdsGateway(settings), Path(args.log)),
        host=args.host,
        port=args.port,
        print=lambda _: print("FAS ready", flush=True),
    )


if __name__ == "__main__":
    main()
