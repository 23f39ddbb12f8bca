"""The portal's pages as the handlers render them: the sign-in form, the code step, the page of a
connected guest. Every page gets the visit's CSRF token; errors name the field they belong to,
so that the field points at its message for screen readers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from appliance.portal.gateways.none import NoGateway
from appliance.portal.keys import SYSTEM, VISIT
from appliance.portal.phones import masked
from appliance.portal.visits import REMEMBER_COOKIE, Visit
from appliance.storage.guests import SessionView
from appliance.web.csrf import CSRF_FIELD
from appliance.web.templating import render
from appliance.web.timefmt import format_local

MESSAGE_STATUS = {
    "code.device_limited": 429,
    "code.too_early": 429,
    "voucher.limited": 429,
    "code.budget": 503,
    "code.not_sent": 503,
    "call.check_failed": 503,
    "login.gateway_failed": 503,
    "login.method_unavailable": 503,
}
"""HTTP status of a page showing the message; any other message is the guest's to fix (400)."""


@dataclass(frozen=True)
class FormError:
    key: str
    form: str
    """Which form it belongs to: phone, voucher, relogin, code."""
    input: str | None = None
    """The input it is about (marked aria-invalid), if one."""
    params: dict[str, object] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return MESSAGE_STATUS.get(self.key, 400)


def wait_until(request: web.Request, seconds: float) -> str:
    """When a wait ends, HH:MM in the store's time, rounded up (it must not look shorter than it is)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return format_local(moment, request.app[SYSTEM].tz, "time")


def deadline(request: web.Request, moment: datetime) -> str:
    """When something stops working, HH:MM in the store's time (shown truncated: never later than it is)."""
    return format_local(moment, request.app[SYSTEM].tz, "time")


async def page(
    request: web.Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    promos: bool = False,
    headers: dict[str, str] | None = None,
) -> web.Response:
    system = request.app[SYSTEM]
    visit = request[VISIT]
    shown = await system.promotions.current(datetime.now(UTC)) if promos else []
    response = render(
        request,
        template,
        {
            "csrf_token": visit.csrf_token if visit is not None else "",
            "CSRF_FIELD": CSRF_FIELD,
            "promos": shown,
            **(context or {}),
        },
        status=status,
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


async def login_page(
    request: web.Request, visit: Visit, *, error: FormError | None = None, phone: str = "", promotions: bool = False
) -> web.Response:
    system = request.app[SYSTEM]
    service = system.identification
    remembered = await service.remembered(visit.device, request.cookies.get(REMEMBER_COOKIE))
    who = None
    if remembered is not None:
        who = remembered.identity.phone_e164 and masked(remembered.identity.phone_e164)
        who = who or remembered.identity.guest_name
    return await page(
        request,
        "login.html",
        {
            "methods": service.methods,
            "external_name": service.external.name if service.external is not None else "",
            "error": error,
            "phone": phone,
            "promotions": promotions,
            "remembered_who": who,
            "remembered_consent_current": remembered is not None and service.consent_current(remembered),
        },
        status=error.status if error else 200,
        promos=True,
        headers=_retry_after(error),
    )


def _retry_after(error: FormError | None) -> dict[str, str] | None:
    wait = error.params.get("wait_s") if error else None
    return {"Retry-After": str(max(1, math.ceil(wait)))} if isinstance(wait, int | float) else None


async def code_page(request: web.Request, visit: Visit, *, error: FormError | None = None) -> web.Response:
    system = request.app[SYSTEM]
    pending = visit.pending
    assert pending is not None
    next_in = system.identification.next_code_in(pending.phone.e164, visit.device)
    return await page(
        request,
        "code.html",
        {
            "pending": pending,
            "error": error,
            "expires": deadline(request, pending.expires_utc),
            "next_code_at": wait_until(request, next_in) if next_in else None,
            "code_length": system.settings.code_length,
        },
        status=error.status if error else 200,
        headers=_retry_after(error),
    )


async def status_page(request: web.Request, visit: Visit | None, view: SessionView) -> web.Response:
    dst = visit.dst if visit is not None else None
    finish = visit.finish_url if visit is not None else None
    return await page(
        request,
        "welcome.html",
        {
            "until": deadline(request, view.session.expires_utc),
            "dst": dst,
            "dst_host": urlsplit(dst).hostname if dst else None,
            "finish_url": finish,
            # With no gateway driver nothing lets the device through: saying "connected" would be a lie.
            "opens_access": not isinstance(request.app[SYSTEM].gateway, NoGateway),
        },
    )
