"""Which requests are addressed to the portal itself, where the portal is, and where a guest may
be sent on from it.

A guest's request for any other site reaches the portal only because the gateway diverted it
(its Host header names that site): such requests are answered by probes.py. The portal's own
names are the address the request arrived at (the socket's, never the Host header's word for
it), the listener's configured host and the host of `public_url`.

Open redirects: the portal never answers with a 30x to an address taken from the request. A
`dst` (or `redirect`) parameter is kept only if it is an http(s) address of another host,
without user name or password, and is shown after login as a plain link to it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from yarl import URL

DESTINATION_PARAMS: Final = ("dst", "redirect")
DESTINATION_MAX_LENGTH: Final = 2000


@dataclass(frozen=True)
class PortalAddress:
    listen_host: str
    public_url: str
    """https://name of the portal, or "" (then the address the guest reached is used)."""


def _socket(request: web.Request) -> tuple[str, int] | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[0]), int(sockname[1])
    return None


def _hostname(host_header: str | None) -> str | None:
    if not host_header:
        return None
    try:
        return URL(f"http://{host_header}").host
    except ValueError:
        return host_header.lower()


def own_hostnames(request: web.Request, address: PortalAddress) -> set[str]:
    names = {address.listen_host.lower()}
    if address.public_url:
        names.add((urlsplit(address.public_url).hostname or "").lower())
    sock = _socket(request)
    if sock is not None:
        names.add(sock[0].lower())
    return names


def addressed_to_us(request: web.Request, address: PortalAddress) -> bool:
    """False when the Host header names another site (a request the gateway diverted here)."""
    host = _hostname(request.headers.get("Host"))
    # HTTP/1.0 without a Host header can only mean the address it connected to.
    return host is None or host.lower() in own_hostnames(request, address)


def portal_base(request: web.Request, address: PortalAddress) -> str:
    """The portal's address for links that must work from another site's page (no trailing slash)."""
    if address.public_url:
        return address.public_url
    sock = _socket(request)
    if sock is None:
        return f"http://{address.listen_host}"
    host, port = sock
    if ipaddress.ip_address(host.split("%")[0]).version == 6:
        host = f"[{host}]"
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"


def destination(request: web.Request, address: PortalAddress) -> str | None:
    """The guest's original destination from the query, if it is safe to show as a link."""
    raw = next((request.query[p] for p in DESTINATION_PARAMS if p in request.query), None)
    if raw is None or len(raw) > DESTINATION_MAX_LENGTH or any(ord(c) < 0x21 for c in raw):
        return None
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        return None
    if host in own_hostnames(request, address) or port == 0:
        return None
    return raw
