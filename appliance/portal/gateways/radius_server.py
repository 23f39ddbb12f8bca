"""The RADIUS server's UDP side: packets in, checked, handed to the driver, answers out.

It runs in the daemon's event loop (asyncio datagram endpoints, not pyrad's threaded server).
A packet is answered only if it comes from a configured gateway (NAS) and proves it knows the
shared secret (RFC 2866 Request Authenticator for accounting, Message-Authenticator for access
where sent). Everything else is dropped without an answer and logged without the secret.

Duplicates (RFC 5080 section 2.2.2): a gateway resends a request whose answer it did not get,
with the same source, Identifier and Request Authenticator. Such a resend is answered with the
cached answer (or dropped while the first is still being worked on), so a retransmitted
Accounting-Request is stored once and a retransmitted Access-Request gets the same answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal, cast

from pyrad import packet
from pyrad.dictionary import Dictionary

from appliance.portal.gateways.settings import RadiusClientSettings

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S: Final = 30.0
"""How long an answer is kept for resends (gateways give up on a request well within this)."""
DUPLICATE_CACHE_MAX: Final = 4096
UNKNOWN_LOG_INTERVAL_S: Final = 60.0
"""A flood from an unknown address is logged once a minute per address, not per packet."""

Kind = Literal["auth", "acct"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Nas:
    """A configured gateway, as the server uses it."""

    name: str
    networks: tuple[IPNetwork, ...]
    secret: bytes
    coa_port: int | None = None
    require_message_authenticator: bool = False

    @classmethod
    def from_settings(cls, c: RadiusClientSettings) -> Nas:
        assert c.secret is not None, "the settings refuse a client without a secret"
        return cls(
            name=c.name,
            networks=tuple(c.addresses),
            secret=c.secret.get_secret_value().encode(),
            coa_port=c.coa_port,
            require_message_authenticator=c.require_message_authenticator,
        )


class NasTable:
    def __init__(self, nases: list[Nas]) -> None:
        self._nases = nases

    def find(self, address: str) -> Nas | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return next((n for n in self._nases if any(ip in net for net in n.networks)), None)

    def by_name(self, name: str) -> Nas | None:
        return next((n for n in self._nases if n.name == name), None)


AccessHandler = Callable[[packet.AuthPacket, Nas, str], Awaitable[packet.Packet]]
"""Answers a checked Access-Request (from the NAS at the address) with an Accept or Reject."""
AccountingHandler = Callable[[packet.AcctPacket, Nas, str], Awaitable[None]]
"""Stores a checked Accounting-Request; the response is sent only once it returns."""


@dataclass
class _Seen:
    at: float
    reply: bytes | None = None


@dataclass
class RadiusEndpoint(asyncio.DatagramProtocol):
    """One listening port: authentication or accounting."""

    kind: Kind
    nases: NasTable
    dictionary: Dictionary
    on_access: AccessHandler
    on_accounting: AccountingHandler
    transport: asyncio.DatagramTransport | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _seen: OrderedDict[tuple[str, int, int, bytes], _Seen] = field(default_factory=OrderedDict)
    _unknown_logged: dict[str, float] = field(default_factory=dict)
    _signing_nases: set[str] = field(default_factory=set)
    """Gateways that have sent a Message-Authenticator: from then on they must (FreeRADIUS 'auto')."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector transport does not subclass DatagramTransport, though it is one.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), int(str(addr[1]))
        nas = self.nases.find(host)
        if nas is None:
            self._log_unknown(host)
            return
        if len(data) < 20:
            log.warning("RADIUS packet too short dropped", extra={"nas": nas.name, "source": host})
            return
        key = (host, port, data[1], data[4:20])
        now = time.monotonic()
        self._forget_old(now)
        seen = self._seen.get(key)
        if seen is not None:
            if seen.reply is not None and self.transport is not None:
                self.transport.sendto(seen.reply, (host, port))
            return
        request = self._decode(data, nas, host)
        if request is None:
            return
        self._seen[key] = _Seen(now)
        task = asyncio.create_task(self._answer(request, nas, host, port, key), name=f"radius-{self.kind}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _decode(self, data: bytes, nas: Nas, host: str) -> packet.Packet | None:
        expected = packet.AccessRequest if self.kind == "auth" else packet.AccountingRequest
        cls = packet.AuthPacket if self.kind == "auth" else packet.AcctPacket
        try:
            request = cls(secret=nas.secret, dict=self.dictionary, packet=data)
        except packet.PacketError as exc:
            log.warning("malformed RADIUS packet dropped", extra={"nas": nas.name, "source": host, "error": str(exc)})
            return None
        if request.code != expected:
            log.info(
                "RADIUS packet of a kind this port does not serve dropped",
                extra={"nas": nas.name, "source": host, "code": request.code, "port_kind": self.kind},
            )
            return None
        problem = self._authenticity_problem(request, nas)
        if problem is not None:
            log.warning(
                f"RADIUS packet dropped: {problem}; check that the gateway and "
                "portal.gateway.radius.clients have the same secret",
                extra={"nas": nas.name, "source": host},
            )
            return None
        return request

    def _authenticity_problem(self, request: packet.Packet, nas: Nas) -> str | None:
        if self.kind == "acct":
            assert isinstance(request, packet.AcctPacket)
            return None if request.VerifyAcctRequest() else "its Request Authenticator does not match the secret"
        if request.message_authenticator:
            if not request.verify_message_authenticator():
                return "its Message-Authenticator does not match the secret"
            self._signing_nases.add(nas.name)
            return None
        if nas.require_message_authenticator or nas.name in self._signing_nases:
            return "it has no Message-Authenticator, which this gateway must send"
        return None

    async def _answer(
        self, request: packet.Packet, nas: Nas, host: str, port: int, key: tuple[str, int, int, bytes]
    ) -> None:
        try:
            if self.kind == "auth":
                assert isinstance(request, packet.AuthPacket)
                reply = await self.on_access(request, nas, host)
            else:
                assert isinstance(request, packet.AcctPacket)
                await self.on_accounting(request, nas, host)
                reply = request.CreateReply()
            raw = reply.ReplyPacket()
        except Exception:
            # No answer: the gateway resends, and the resend is worked on afresh.
            self._seen.pop(key, None)
            log.exception("RADIUS request not answered", extra={"nas": nas.name, "source": host})
            return
        seen = self._seen.get(key)
        if seen is not None:
            seen.reply = raw
        if self.transport is not None:
            self.transport.sendto(raw, (host, port))

    def _forget_old(self, now: float) -> None:
        while self._seen:
            first_key, first = next(iter(self._seen.items()))
            if now - first.at < DUPLICATE_WINDOW_S and len(self._seen) < DUPLICATE_CACHE_MAX:
                break
            self._seen.pop(first_key)

    def _log_unknown(self, host: str) -> None:
        now = time.monotonic()
        if now - self._unknown_logged.get(host, -UNKNOWN_LOG_INTERVAL_S) < UNKNOWN_LOG_INTERVAL_S:
            return
        if len(self._unknown_logged) > DUPLICATE_CACHE_MAX:
            self._unknown_logged.clear()
        self._unknown_logged[host] = now
        log.warning(
            "RADIUS packet from an address that is no configured gateway dropped; if it is one, add it to "
            "portal.gateway.radius.clients",
            extra={"source": host, "port_kind": self.kind},
        )

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
