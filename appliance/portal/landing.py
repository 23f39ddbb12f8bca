"""The pages a guest opens by address: the start page (sign-in, or the state of a connected
device), the venue page with the store's offers (RFC 8908 venue-info-url), the consent texts,
and the readiness check.

The start page is where a login begins: the gateway is asked which device this is, and the
answer is kept on the server for the whole visit (visits.py).
"""

from __future__ import annotations

from aiohttp import web

from appliance.portal.hosts import destination
from appliance.portal.keys import SYSTEM, VISIT, VISIT_ID, VISITS
from appliance.portal.pages import login_page, page, status_page
from appliance.portal.visits import Visit, set_visit_cookie
from appliance.web.i18n import LANG_KEY

routes = web.RouteTableDef()


async def _begin(request: web.Request) -> tuple[Visit | None, str | None]:
    """The request's visit, started now if there is none or the device changed; the new id, if new."""
    system = request.app[SYSTEM]
    visit = request[VISIT]
    device = await system.gateway.identify(request)
    dst = destination(request, system.address)
    if visit is not None and (device is None or (device.mac, device.ip) == (visit.device.mac, visit.device.ip)):
        visit.dst = dst or visit.dst
        return visit, None
    if device is None:
        return None, None
    visit_id, visit = request.app[VISITS].start(device, dst)
    request[VISIT], request[VISIT_ID] = visit, visit_id
    return visit, visit_id


@routes.get("/", name="home")
async def home(request: web.Request) -> web.Response:
    visit, new_id = await _begin(request)
    if visit is None:
        return await page(request, "device_unknown.html")
    view = await request.app[SYSTEM].identification.active(visit.device)
    response = await status_page(request, visit, view) if view is not None else await login_page(request, visit)
    if new_id is not None:
        set_visit_cookie(response, request, new_id)
    return response


@routes.get("/welcome", name="welcome")
async def welcome(request: web.Request) -> web.Response:
    visit = request[VISIT]
    view = await request.app[SYSTEM].identification.active(visit.device) if visit is not None else None
    if view is None:
        return web.Response(status=303, headers={"Location": "/"})
    return await status_page(request, visit, view)


@routes.get("/venue", name="venue")
async def venue(request: web.Request) -> web.Response:
    return await page(request, "venue.html", promos=True)


@routes.get("/consent/{document:personal-data|promotions}", name="consent")
async def consent(request: web.Request) -> web.Response:
    texts = request.app[SYSTEM].consent
    lang = request[LANG_KEY]
    personal = request.match_info["document"] == "personal-data"
    return await page(
        request,
        "consent.html",
        {
            "title_key": "consent.pd.title" if personal else "consent.promo.title",
            "paragraphs": texts.personal_data(lang) if personal else texts.promotions(lang),
            "version": texts.recorded_version,
        },
    )


@routes.get("/healthz", name="healthz")
async def healthz(request: web.Request) -> web.Response:
    # No version here: the guest network has no need to know what software runs the store.
    return web.json_response({"status": "ok"})
