"""HTTP Digest access authentication as RTSP cameras speak it (RFC 2617, MD5, qop=auth).

MD5 is what the protocol and the clients use; this guards a test camera, not real secrets.
Nonces are stateless: the issue time plus an HMAC of it under a per-server random key, so the
server keeps no table of nonces and a nonce older than `nonce_lifetime` is answered as stale.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from enum import Enum
from urllib.parse import urlsplit

DEFAULT_REALM = "appliance-simulator"
NONCE_LIFETIME = 300.0
"""Seconds a nonce stays valid; clients then get 401 with stale=TRUE and retry without asking."""
_MAC_HEX = 16
"""Hex digits of the HMAC kept in a nonce: 64 bits, plenty against guessing within its lifetime."""

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s"]*))\s*(?:,|$)')


class AuthResult(Enum):
    OK = "ok"
    MISSING = "missing"
    WRONG = "wrong"
    STALE = "stale"


def parse_params(header: str) -> dict[str, str]:
    """The name=value pairs of a `Digest ...` header (names in lower case, quotes removed)."""
    params: dict[str, str] = {}
    pos = 0
    while pos < len(header):
        m = _PARAM.match(header, pos)
        if m is None:
            raise ValueError(f"malformed digest parameters near {header[pos : pos + 30]!r}")
        quoted, bare = m.group(2), m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = m.end()
    return params


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def digest_response(
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The `response` value a client computes (RFC 2617 §3.2.2.1)."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


def _same_resource(a: str, b: str) -> bool:
    """Clients put either the whole URL or only its path in `uri`."""
    return a == b or urlsplit(a).path.rstrip("/") == urlsplit(b).path.rstrip("/")


class DigestAuth:
    def __init__(
        self,
        username: str,
        password: str,
        realm: str = DEFAULT_REALM,
        nonce_lifetime: float = NONCE_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.username = username
        self._password = password
        self.realm = realm
        self.nonce_lifetime = nonce_lifetime
        self._clock = clock
        self._key = secrets.token_bytes(32)

    def _mac(self, issued: str) -> str:
        return hmac.new(self._key, issued.encode("ascii"), hashlib.sha256).hexdigest()[:_MAC_HEX]

    def new_nonce(self) -> str:
        issued = f"{int(self._clock()):x}"
        return issued + self._mac(issued)

    def _nonce_state(self, nonce: str) -> AuthResult:
        issued, mac = nonce[:-_MAC_HEX], nonce[-_MAC_HEX:]
        if not issued or not hmac.compare_digest(mac, self._mac(issued)):
            return AuthResult.WRONG
        try:
            age = self._clock() - int(issued, 16)
        except ValueError:
            return AuthResult.WRONG
        return AuthResult.OK if 0 <= age <= self.nonce_lifetime else AuthResult.STALE

    def challenge(self, stale: bool = False) -> str:
        """The WWW-Authenticate value of a 401."""
        value = f'Digest realm="{self.realm}", nonce="{self.new_nonce()}", algorithm=MD5, qop="auth"'
        return value + ", stale=TRUE" if stale else value

    def check(self, method: str, request_uri: str, authorization: str | None) -> AuthResult:
        """Whether an Authorization header proves the password for this request."""
        if not authorization:
            return AuthResult.MISSING
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "digest":
            return AuthResult.WRONG
        try:
            p = parse_params(rest)
        except ValueError:
            return AuthResult.WRONG
        needed = ("username", "realm", "nonce", "uri", "response")
        if any(k not in p for k in needed) or p.get("algorithm", "MD5").upper() != "MD5":
            return AuthResult.WRONG
        if p["realm"] != self.realm or not _same_resource(p["uri"], request_uri):
            return AuthResult.WRONG
        qop = p.get("qop")
        if qop not in (None, "auth") or (qop and ("nc" not in p or "cnonce" not in p)):
            return AuthResult.WRONG
        expected = digest_response(
            self.username,
            self.realm,
            self._password,
            method,
            p["uri"],
            p["nonce"],
            qop,
            p.get("nc", ""),
            p.get("cnonce", ""),
        )
        user_ok = hmac.compare_digest(p["username"].encode(), self.username.encode())
        if not (user_ok and hmac.compare_digest(p["response"].encode(), expected.encode())):
            return AuthResult.WRONG
        # A right answer to an expired nonce: the client knows the password, it only needs a
        # fresh nonce (stale=TRUE lets it retry without asking the user again).
        return self._nonce_state(p["nonce"])
