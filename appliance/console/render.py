"""Rendering console pages: every page knows who is signed in (for the menu and its forms)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from yarl import URL

from appliance.console.keys import SESSION
from appliance.web.templating import render


def page(
    request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    return render(request, template, {"session": request[SESSION], **(context or {})}, status=status)


def redirect(location: URL) -> web.Response:
    """A 303 to one of our own named routes (never to an address taken from the request)."""
    return web.Response(status=303, headers={"Location": str(location)})
