"""A guest's visit to the portal: the device the gateway reported when the login started, kept on
the server and found again through a random cookie, with the visit's CSRF token.

The browser never says which device it is: only the cookie's random id travels, and the device
was taken from the gateway when the visit began. The cookie is HttpOnly and SameSite=Lax (Lax,
not Strict: the guest arrives from a redirect of another site's address). After a successful
login the visit gets a new id (a fixation planted before login is worth nothing after it).

Visits live in memory: a restart only asks a guest in the middle of a login to start again (the
codes and their tries are in the database). Their number is bounded, oldest dropped first, so a
flood of cookieless requests costs bounded memory.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from aiohttp import web

from appliance.portal.gateways.base import Device
from appliance.portal.phones import Phone
from appliance.portal.settings import LoginMethod
from appliance.web.csrf import new_token

VISIT_COOKIE: Final = "portal_visit"
REMEMBER_COOKIE: Final = "portal_device"
VISIT_ID_BYTES: Final = 32
VISIT_TTL_S: Final = 30 * 60.0
"""A login takes a few minutes; a visit unused for half an hour is forgotten."""
MAX_VISITS: Final = 20_000
"""Far above the 300 guests a shop's gateway serves at once."""


@dataclass
class PendingCode:
    request_id: str
    phone: Phone
    method: LoginMethod
    expires_utc: datetime
    promotions: bool
    """The promotions answer given with the number, used when the login completes."""
    call_number: str | None = None


@dataclass
class PendingExternal:
    state: str
    """What the identity provider's answer must carry back (used once)."""
    promotions: bool


@dataclass
class Visit:
    device: Device
    csrf_token: str = field(default_factory=new_token)
    dst: str | None = None
    """Where the guest was going (shown as a link after login, never redirected to)."""
    pending: PendingCode | None = None
    external: PendingExternal | None = None
    finish_url: str | None = None
    """Where the gateway wants the browser after login (openNDS); the welcome page sends it there."""
    seen: float = 0.0


def _digest(visit_id: str) -> bytes:
    return hashlib.sha256(visit_id.encode()).digest()


class VisitStore:
    def __init__(
        self, *, ttl_s: float = VISIT_TTL_S, max_visits: int = MAX_VISITS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._max = max_visits
        self._clock = clock
        # Least recently used first.
        self._visits: OrderedDict[bytes, Visit] = OrderedDict()

    def __len__(self) -> int:
        return len(self._visits)

    def start(self, device: Device, dst: str | None = None) -> tuple[str, Visit]:
        """A new visit; returns its id for the cookie (only its hash is kept) and the visit."""
        self._expire()
        while len(self._visits) >= self._max:
            self._visits.popitem(last=False)
        visit_id = secrets.token_urlsafe(VISIT_ID_BYTES)
        visit = Visit(device=device, dst=dst, seen=self._clock())
        self._visits[_digest(visit_id)] = visit
        return visit_id, visit

    def get(self, visit_id: str | None) -> Visit | None:
        if not visit_id:
            return None
        key = _digest(visit_id)
        visit = self._visits.get(key)
        if visit is None:
            return None
        now = self._clock()
        if now - visit.seen > self._ttl_s:
            del self._visits[key]
            return None
        visit.seen = now
        self._visits.move_to_end(key)
        return visit

    def renew(self, visit_id: str, visit: Visit) -> tuple[str, Visit]:
        """The visit's device and destination under a new id and CSRF token; the old id stops working."""
        self._visits.pop(_digest(visit_id), None)
        return self.start(visit.device, visit.dst)

    def _expire(self) -> None:
        cutoff = self._clock() - self._ttl_s
        while self._visits:
            key, oldest = next(iter(self._visits.items()))
            if oldest.seen > cutoff:
                return
            del self._visits[key]


def set_visit_cookie(response: web.StreamResponse, request: web.Request, visit_id: str) -> None:
    # No max-age: a session cookie, gone when the login window closes.
    response.set_cookie(VISIT_COOKIE, visit_id, path="/", httponly=True, samesite="Lax", secure=request.secure)


def set_remember_cookie(response: web.StreamResponse, request: web.Request, token: str, days: int) -> None:
    response.set_cookie(
        REMEMBER_COOKIE,
        token,
        max_age=days * 24 * 3600,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )
