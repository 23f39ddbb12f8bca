"""The sign-in forms: a phone number and its code (or call), a voucher, an identity provider, a
remembered device, and signing out. Each form carries the visit's CSRF token (checked by the app's
middleware) and acts for the device the visit began with; none reads an address, MAC or redirect
target from the form.

After a login the browser is sent to our own welcome page (303), never elsewhere: a gateway that
needs the browser at its own address (openNDS) gets it from there, by a link and a refresh. The
one redirect out is to the identity provider's page, whose address is the configuration's; its
answer comes back to /login/external/done and counts only with the state of this visit, once.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from appliance.portal.hosts import portal_base
from appliance.portal.identify import CodeSent, Consent, LoggedIn, Refused, WrongCode
from appliance.portal.keys import SYSTEM, VISIT, VISIT_ID, VISITS
from appliance.portal.pages import FormError, code_page, login_page, wait_until
from appliance.portal.settings import LoginMethod
from appliance.portal.visits import (
    REMEMBER_COOKIE,
    PendingCode,
    PendingExternal,
    Visit,
    set_remember_cookie,
    set_visit_cookie,
)
from appliance.web.i18n import LANG_KEY

routes = web.RouteTableDef()

FIELD_OF = {
    "phone.invalid": "phone",
    "phone.country": "phone",
    "phone.not_mobile": "phone",
    "consent.required": "consent",
    "code.format": "code",
    "code.wrong": "code",
    "voucher.wrong": "voucher",
}
EXTERNAL_DONE_PATH = "/login/external/done"


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _visit(request: web.Request) -> Visit:
    """The form's visit: CSRF has already required one, this keeps the type checker informed."""
    visit = request[VISIT]
    if visit is None:
        raise web.HTTPForbidden()
    return visit


def _text(form: Mapping[str, object], name: str, limit: int = 64) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _consent(form: Mapping[str, object]) -> Consent:
    return Consent(personal_data=form.get("consent_pd") == "yes", promotions=form.get("consent_promo") == "yes")


def _error(request: web.Request, refused: Refused, form: str) -> FormError:
    params: dict[str, object] = {}
    if refused.wait_s is not None:
        params = {"time": wait_until(request, refused.wait_s), "wait_s": refused.wait_s}
    if refused.key == "phone.country":
        params["codes"] = ", ".join(f"+{c}" for c in request.app[SYSTEM].settings.allowed_country_codes)
    return FormError(refused.key, form, FIELD_OF.get(refused.key), params)


def _logged_in(request: web.Request, visit: Visit, outcome: LoggedIn) -> web.Response:
    """The new session's answer: a fresh visit id (nothing planted before login survives it)."""
    old_id = request[VISIT_ID]
    assert old_id is not None
    new_id, renewed = request.app[VISITS].renew(old_id, visit)
    renewed.finish_url = outcome.finish_url
    response = _see_other("/welcome")
    set_visit_cookie(response, request, new_id)
    if outcome.remember_token is not None:
        set_remember_cookie(response, request, outcome.remember_token, request.app[SYSTEM].settings.remember_days)
    return response


@routes.post("/login/phone", name="login_phone")
async def request_code(request: web.Request) -> web.Response:
    visit = _visit(request)
    form = await request.post()
    phone, consent = _text(form, "phone"), _consent(form)
    method: LoginMethod = "call" if form.get("method") == "call" else "sms"
    service = request.app[SYSTEM].identification
    outcome = await service.request_code(visit.device, phone, consent, request[LANG_KEY], method=method)
    if isinstance(outcome, Refused):
        error = _error(request, outcome, "phone")
        return await login_page(request, visit, error=error, phone=phone, promotions=consent.promotions)
    visit.pending = _pending(outcome, consent)
    return _see_other("/login/code")


def _pending(sent: CodeSent, consent: Consent) -> PendingCode:
    return PendingCode(sent.request_id, sent.phone, sent.method, sent.expires_utc, consent.promotions, sent.call_number)


@routes.get("/login/code", name="login_code")
async def code_form(request: web.Request) -> web.Response:
    visit = request[VISIT]
    if visit is None or visit.pending is None:
        return _see_other("/")
    return await code_page(request, visit)


@routes.post("/login/code", name="login_code_confirm")
async def confirm_code(request: web.Request) -> web.Response:
    visit = _visit(request)
    pending = visit.pending
    if pending is None:
        return _see_other("/")
    form = await request.post()
    service = request.app[SYSTEM].identification
    consent = Consent(personal_data=True, promotions=pending.promotions)
    if pending.method == "call":
        outcome = await service.confirm_call(visit.device, pending.request_id, consent)
    else:
        outcome = await service.confirm_code(visit.device, pending.request_id, _text(form, "code", 16), consent)
    if isinstance(outcome, LoggedIn):
        return _logged_in(request, visit, outcome)
    if isinstance(outcome, WrongCode):
        key = "call.pending" if pending.method == "call" else "code.wrong"
        params: dict[str, object] = {"left": outcome.attempts_left, "number": pending.call_number or ""}
        return await code_page(request, visit, error=FormError(key, "code", FIELD_OF.get(key), params))
    return await code_page(request, visit, error=_error(request, outcome, "code"))


@routes.post("/login/resend", name="login_resend")
async def resend(request: web.Request) -> web.Response:
    visit = _visit(request)
    pending = visit.pending
    if pending is None:
        return _see_other("/")
    service = request.app[SYSTEM].identification
    wait = service.next_code_in(pending.phone.e164, visit.device)
    if wait is not None:
        return await code_page(request, visit, error=_error(request, Refused("code.too_early", wait), "code"))
    consent = Consent(personal_data=True, promotions=pending.promotions)
    outcome = await service.request_code(
        visit.device, pending.phone.e164, consent, request[LANG_KEY], method=pending.method, replaces=pending.request_id
    )
    if isinstance(outcome, Refused):
        return await code_page(request, visit, error=_error(request, outcome, "code"))
    visit.pending = _pending(outcome, consent)
    return _see_other("/login/code")


@routes.post("/login/voucher", name="login_voucher")
async def voucher(request: web.Request) -> web.Response:
    visit = _visit(request)
    form = await request.post()
    consent = _consent(form)
    outcome = await request.app[SYSTEM].identification.redeem_voucher(visit.device, _text(form, "voucher"), consent)
    if isinstance(outcome, LoggedIn):
        return _logged_in(request, visit, outcome)
    return await login_page(request, visit, error=_error(request, outcome, "voucher"), promotions=consent.promotions)


@routes.post("/login/external", name="login_external")
async def external(request: web.Request) -> web.Response:
    visit = _visit(request)
    form = await request.post()
    consent = _consent(form)
    system = request.app[SYSTEM]
    return_url = portal_base(request, system.address) + EXTERNAL_DONE_PATH
    outcome = system.identification.start_external(consent, return_url, request[LANG_KEY])
    if isinstance(outcome, Refused):
        error = _error(request, outcome, "external")
        return await login_page(request, visit, error=error, promotions=consent.promotions)
    visit.external = PendingExternal(outcome.state, consent.promotions)
    return _see_other(outcome.url)


@routes.get(EXTERNAL_DONE_PATH, name="login_external_done")
async def external_done(request: web.Request) -> web.Response:
    visit = request[VISIT]
    pending = visit.external if visit is not None else None
    if visit is None or pending is None:
        return _see_other("/")
    visit.external = None  # one answer per start: a replayed or second answer finds nothing
    consent = Consent(personal_data=True, promotions=pending.promotions)
    params = {name: value for name, value in request.query.items() if isinstance(value, str)}
    outcome = await request.app[SYSTEM].identification.finish_external(visit.device, params, pending.state, consent)
    if isinstance(outcome, LoggedIn):
        return _logged_in(request, visit, outcome)
    return await login_page(request, visit, error=_error(request, outcome, "external"), promotions=pending.promotions)


@routes.post("/login/relogin", name="login_relogin")
async def relogin(request: web.Request) -> web.Response:
    visit = _visit(request)
    form = await request.post()
    # The form asks for consent only when the texts changed since the guest last agreed.
    consent = _consent(form) if form.get("consent_asked") == "yes" else None
    service = request.app[SYSTEM].identification
    outcome = await service.relogin(visit.device, request.cookies.get(REMEMBER_COOKIE), consent)
    if isinstance(outcome, LoggedIn):
        return _logged_in(request, visit, outcome)
    return await login_page(request, visit, error=_error(request, outcome, "relogin"))


@routes.post("/signout", name="signout")
async def signout(request: web.Request) -> web.Response:
    visit = _visit(request)
    await request.app[SYSTEM].identification.logout(visit.device)
    response = _see_other("/")
    response.del_cookie(REMEMBER_COOKIE, path="/")
    return response
