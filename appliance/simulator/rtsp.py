"""RTSP 1.0 messages (RFC 2326): parsing requests, building responses, reading Transport.

Pure functions without I/O; the server reads bytes off the socket and hands them here. Anything
malformed raises `RtspError` carrying the status to answer with, never a bare exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from appliance import __version__

VERSION = "RTSP/1.0"
SERVER = f"appliance-simulator/{__version__}"
MAX_HEAD_BYTES = 8192
"""Longest request line plus headers accepted; real requests are a few hundred bytes."""
MAX_BODY_BYTES = 65536
"""Largest request body accepted (clients send bodies only with SET_PARAMETER or ANNOUNCE)."""

_METHOD = re.compile(r"^[A-Z][A-Z_]*$")

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "RTSP Version Not Supported",
}


class RtspError(Exception):
    """A request that gets `status` as its answer; `detail` says why (for logs, never secrets)."""

    def __init__(self, status: int, detail: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(f"{status} {REASONS.get(status, '')}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = tuple(headers)


@dataclass(frozen=True)
class RtspRequest:
    method: str
    uri: str
    headers: dict[str, str] = field(default_factory=dict)
    """Header names in lower case; a repeated header keeps its last value."""
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def cseq(self) -> str | None:
        return self.header("cseq")

    @property
    def content_length(self) -> int:
        raw = self.header("content-length")
        if raw is None:
            return 0
        if not raw.strip().isdigit():
            raise RtspError(400, f"Content-Length is not a number: {raw[:40]!r}")
        length = int(raw)
        if length > MAX_BODY_BYTES:
            raise RtspError(400, f"body of {length} bytes is larger than the {MAX_BODY_BYTES} accepted")
        return length

    @property
    def path(self) -> str:
        """The URI's path, percent-decoded, without leading or trailing slashes ('' for '*')."""
        if self.uri == "*":
            return ""
        return unquote(urlsplit(self.uri).path).strip("/")


def parse_head(head: bytes) -> RtspRequest:
    """A request line and headers (up to and including the blank line), without the body."""
    if len(head) > MAX_HEAD_BYTES:
        raise RtspError(400, f"request head longer than {MAX_HEAD_BYTES} bytes")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise RtspError(400, "request head is not UTF-8 text") from None
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not all(parts):
        raise RtspError(400, f"malformed request line {lines[0][:80]!r}")
    method, uri, version = parts
    if not version.startswith("RTSP/"):
        raise RtspError(400, f"not an RTSP request: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    last: str | None = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and last is not None:  # folded continuation of the previous header
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise RtspError(400, f"malformed header line {line[:80]!r}")
        last = name.lower()
        headers[last] = value.strip()
    request = RtspRequest(method, uri, headers)
    if version != VERSION:
        raise RtspError(505, f"only {VERSION} is spoken here, not {version[:20]}")
    if request.cseq is None:
        raise RtspError(400, "no CSeq header")
    if not _METHOD.match(method):
        raise RtspError(400, f"malformed method {method[:20]!r}")
    if uri != "*" and urlsplit(uri).scheme.lower() not in ("rtsp", "rtsps"):
        raise RtspError(400, f"request URI is not an rtsp:// URL: {uri[:80]!r}")
    return request


def cseq_of(head: bytes) -> str | None:
    """The CSeq of a request that failed to parse, so that even the 400 answer carries it."""
    for line in head.split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"cseq":
            cseq = value.strip().decode("ascii", "replace")
            return cseq if cseq.isdigit() else None
    return None


def build_response(status: int, cseq: str | None, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    lines = [f"{VERSION} {status} {REASONS.get(status, 'Unknown')}"]
    if cseq is not None:
        lines.append(f"CSeq: {cseq}")
    lines.append(f"Server: {SERVER}")
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def interleaved_channels(transport: str | None) -> tuple[int, int]:
    """The RTP and RTCP channels of the first TCP-interleaved choice in a SETUP's Transport.

    Without an `interleaved=` parameter the client leaves the choice to us: 0-1. A request for
    UDP (or multicast) only gets 461, since this server only streams over the RTSP connection.
    """
    if not transport:
        raise RtspError(461, "SETUP without a Transport header")
    for choice in transport.split(","):
        params = [p.strip() for p in choice.split(";")]
        if params[0].upper() != "RTP/AVP/TCP":
            continue
        for p in params[1:]:
            name, _, value = p.partition("=")
            if name.lower() != "interleaved":
                continue
            first, _, second = value.partition("-")
            if not first.isdigit() or (second and not second.isdigit()):
                raise RtspError(400, f"malformed interleaved channels {value[:20]!r}")
            rtp = int(first)
            rtcp = int(second) if second else rtp + 1
            if not (0 <= rtp <= 255 and 0 <= rtcp <= 255):
                raise RtspError(400, f"interleaved channels out of range: {value[:20]!r}")
            return rtp, rtcp
        return 0, 1
    raise RtspError(461, "only RTP/AVP/TCP (interleaved on the RTSP connection) is supported")
