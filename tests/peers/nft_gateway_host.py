"""Hosts the production `nftables` gateway driver inside the gateway namespace, for tests.

    ip netns exec <gw> python -m tests.peers.nft_gateway_host --control /tmp/x.sock \\
        --interface gw-guest --portal-port 8081 [--dns 10.0.0.53] [--allow 192.168.77.9]

Serves, inside the namespace, a stand-in portal on --portal-port (every path answers "PORTAL";
/whoami answers what the driver's identify() makes of the request), and, on a Unix socket the
test reaches from outside the namespace, the driver's own methods: POST /start, /stop, /allow,
/revoke, /status with JSON bodies. Prints "ready" once both listen. It never calls stop() by
itself, so a test can kill it to leave a crashed gateway's table behind.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import signal
import time
from typing import Any

from aiohttp import web

from appliance.portal.gateways.base import Device, GatewayError, Grant
from appliance.portal.gateways.nftables import NftablesGateway
from appliance.portal.gateways.settings import NftablesSettings


def _device(body: dict[str, Any]) -> Device:
    return Device(mac=str(body["mac"]), ip=str(body["ip"]))


def portal_app(gateway: NftablesGateway) -> web.Application:
    async def whoami(request: web.Request) -> web.Response:
        device = await gateway.identify(request)
        return web.json_response(dataclasses.asdict(device) if device else None)

    async def portal(request: web.Request) -> web.Response:
        return web.Response(text="PORTAL\n")

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    app.router.add_route("*", "/{tail:.*}", portal)
    return app


def control_app(gateway: NftablesGateway) -> web.Application:
    async def call(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await request.json() if request.can_read_body else {}
        started = time.monotonic_ns()
        try:
            result: Any = None
            if method == "start":
                await gateway.start()
            elif method == "stop":
                await gateway.stop()
            elif method == "allow":
                fields = {f.name for f in dataclasses.fields(Grant)}
                grant = Grant(**{k: v for k, v in body.items() if k in fields})
                result = await gateway.allow(_device(body), grant)
            elif method == "revoke":
                await gateway.revoke(_device(body))
            elif method == "status":
                status = await gateway.status(_device(body))
                result = {
                    "authorised": status.authorised,
                    "expires_utc": status.expires_utc.isoformat() if status.expires_utc else None,
                    "bytes_in": status.bytes_in,
                    "bytes_out": status.bytes_out,
                }
            else:
                raise web.HTTPNotFound()
        except GatewayError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response({"result": result, "started_ns": started, "finished_ns": time.monotonic_ns()})

    app = web.Application()
    app.router.add_post("/{method}", call)
    return app


async def main(args: argparse.Namespace) -> None:
    settings = NftablesSettings(
        interface=args.interface,
        table=args.table,
        dns_servers=tuple(ipaddress.ip_network(a) for a in args.dns),
        allowed_destinations=tuple(ipaddress.ip_network(a) for a in args.allow),
    )
    gateway = NftablesGateway(settings, portal_port=args.portal_port)
    portal = web.AppRunner(portal_app(gateway))
    control = web.AppRunner(control_app(gateway))
    await portal.setup()
    await control.setup()
    # No host: every address of the namespace, IPv4 and IPv6.
    await web.TCPSite(portal, None, args.portal_port).start()
    await web.UnixSite(control, args.control).start()
    print("ready", flush=True)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await control.cleanup()
    await portal.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", required=True)
    parser.add_argument("--interface", required=True)
    parser.add_argument("--portal-port", type=int, required=True)
    parser.add_argument("--table", default="appliance_portal")
    parser.add_argument("--dns", action="append", default=[])
    parser.add_argument("--allow", action="append", default=[], help="an allowed_destinations entry")
    asyncio.run(main(parser.parse_args()))
