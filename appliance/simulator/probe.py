"""A minimal RTSP client over TCP: the handshake, then interleaved packets as they come.

It exists to look at a camera without decoding it: the benchmark's many cheap clients (which
only drain their streams) and tests that need to see exact protocol answers and RTP headers.
Recording uses FFmpeg's client, not this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from appliance.simulator.digest import digest_response, parse_params
from appliance.simulator.rtsp import MAX_HEAD_BYTES

DRAIN_CHUNK = 1 << 16


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    """Header names in lower case."""
    body: bytes = b""


@dataclass(frozen=True)
class Interleaved:
    channel: int
    data: bytes


class ProbeError(Exception):
    pass


class RtspProbe:
    """One RTSP connection. The URL may carry user:password for Digest authentication."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ValueError(f"not an RTSP URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 554
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        self.url = urlunsplit(parts._replace(netloc=f"{netloc}:{self.port}"))
        self._cseq = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._challenge: tuple[str, str] | None = None  # (realm, nonce) of the last 401
        self.session: str | None = None

    async def connect(self, sock: socket.socket | None = None) -> None:
        """Connect to the URL's host and port, or use `sock`, an already connected socket."""
        if sock is not None:
            self._reader, self._writer = await asyncio.open_connection(sock=sock, limit=MAX_HEAD_BYTES)
        else:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEAD_BYTES)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()

    def _auth_header(self, method: str, uri: str) -> str | None:
        if self._challenge is None or self.username is None or self.password is None:
            return None
        realm, nonce = self._challenge
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = digest_response(self.username, realm, self.password, method, uri, nonce, "auth", nc, cnonce)
        return (
            f'Digest username="{self.username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
        )

    async def send_raw(self, data: bytes) -> None:
        assert self._writer is not None, "connect() first"
        self._writer.write(data)
        await self._writer.drain()

    async def send(self, method: str, uri: str | None = None, headers: dict[str, str] | None = None) -> int:
        """Send a request; returns its CSeq."""
        uri = uri or self.url
        self._cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self._cseq}"]
        auth = self._auth_header(method, uri)
        if auth:
            lines.append(f"Authorization: {auth}")
        if self.session and "Session" not in (headers or {}):
            lines.append(f"Session: {self.session}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        await self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())
        return self._cseq

    async def read(self) -> Response | Interleaved:
        """The next message from the server: a response or an interleaved packet."""
        assert self._reader is not None, "connect() first"
        first = await self._reader.readexactly(1)
        if first == b"$":
            header = await self._reader.readexactly(3)
            return Interleaved(header[0], await self._reader.readexactly(int.from_bytes(header[1:], "big")))
        head = (first + await self._reader.readuntil(b"\r\n\r\n")).decode("utf-8")
        status_line, *lines = head.strip().split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("RTSP/") or not parts[1].isdigit():
            raise ProbeError(f"not an RTSP response: {status_line[:80]!r}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        return Response(int(parts[1]), headers, body)

    async def response(self) -> Response:
        """The next response, skipping interleaved packets that arrive before it."""
        while True:
            message = await self.read()
            if isinstance(message, Response):
                return message

    async def request(self, method: str, uri: str | None = None, headers: dict[str, str] | None = None) -> Response:
        """Send a request and return its response, answering one Digest challenge if we can."""
        await self.send(method, uri, headers)
        response = await self.response()
        challenge = response.headers.get("www-authenticate", "")
        if response.status == 401 and challenge.lower().startswith("digest") and self.username is not None:
            params = parse_params(challenge.partition(" ")[2])
            retry = self._challenge is None or params.get("stale", "").upper() == "TRUE"
            self._challenge = (params["realm"], params["nonce"])
            if retry:
                await self.send(method, uri, headers)
                response = await self.response()
        if "session" in response.headers:
            self.session = response.headers["session"].split(";")[0]
        return response

    async def play(self) -> Response:
        """DESCRIBE, SETUP and PLAY; returns the PLAY response (raises unless each step is 200)."""
        for method, uri, headers in (
            ("DESCRIBE", self.url, {"Accept": "application/sdp"}),
            (
                "SETUP",
                self.url.rstrip("/") + "/trackID=0",
                {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"},
            ),
            ("PLAY", self.url, {"Range": "npt=0.000-"}),
        ):
            response = await self.request(method, uri, headers)
            if response.status != 200:
                raise ProbeError(f"{method} {uri} answered {response.status}")
        return response

    async def drain(self, seconds: float) -> int:
        """Read whatever arrives for `seconds` without looking at it; returns the byte count.

        The cheapest possible client: it keeps the stream flowing without parsing it.
        """
        assert self._reader is not None, "connect() first"
        received = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    chunk = await self._reader.read(DRAIN_CHUNK)
            except TimeoutError:
                break
            if not chunk:
                break
            received += len(chunk)
        return received
