"""Disconnect-Request (RFC 5176): asking a gateway to end a guest's session now.

Sent from a fresh UDP socket to the gateway's dynamic-authorisation port, resent once if no
answer comes in half the time allowed; the answer must be a Disconnect-ACK or -NAK that
verifies against the request and the shared secret.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from pyrad import packet
from pyrad.dictionary import Dictionary

log = logging.getLogger(__name__)

ATTEMPTS = 2


@dataclass
class _Reply(asyncio.DatagramProtocol):
    received: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.received.put_nowait(data)


class DisconnectError(Exception):
    """The gateway did not confirm the disconnect; the message says what it answered."""


async def disconnect(
    address: str,
    port: int,
    secret: bytes,
    dictionary: Dictionary,
    attributes: dict[str, str],
    timeout_s: float,
) -> None:
    """Send a Disconnect-Request identifying the session by `attributes`; DisconnectError unless ACKed."""
    request = packet.CoAPacket(code=packet.DisconnectRequest, secret=secret, dict=dictionary)
    for name, value in attributes.items():
        request[name] = value
    request.add_message_authenticator()
    raw = request.RequestPacket()
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Reply, remote_addr=(address, port))
    try:
        for _ in range(ATTEMPTS):
            transport.sendto(raw)
            answer = await _verified_answer(request, protocol, timeout_s / ATTEMPTS)
            if answer is None:
                continue
            if answer.code == packet.DisconnectACK:
                return
            cause = answer.get("Error-Cause", ["none given"])[0]
            raise DisconnectError(f"the gateway refused the disconnect (Error-Cause: {cause})")
        raise DisconnectError(f"no answer from {address}:{port} in {timeout_s:g} s")
    finally:
        transport.close()


async def _verified_answer(request: packet.CoAPacket, protocol: _Reply, wait_s: float) -> packet.Packet | None:
    deadline = asyncio.get_running_loop().time() + wait_s
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            data = await asyncio.wait_for(protocol.received.get(), left)
        except TimeoutError:
            return None
        try:
            answer = request.CreateReply(packet=data)
        except packet.PacketError:
            continue
        if answer.code in (packet.DisconnectACK, packet.DisconnectNAK) and request.VerifyReply(answer, data):
            return answer
        log.warning("an answer to a Disconnect-Request did not verify (wrong secret?) and was ignored")
    return None
