"""Jinja2 for both web apps: templates shipped inside the package, escaping always on.

Each app has its own `templates/` folder with a `base.html` layout; the shared templates here
(error pages) extend whichever `base.html` the app provides, so an error on the portal looks
like the portal and one on the console like the console.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from appliance.web.i18n import LANG_KEY, LANG_NAMES, Catalogue, Lang, translate
from appliance.web.timefmt import TimeFormat, format_local

JINJA_ENV = web.AppKey("jinja_env", jinja2.Environment)


def make_environment(app_package: str, catalogue: Catalogue, tz: ZoneInfo) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader(app_package, "templates"),
                jinja2.PackageLoader("appliance.web", "templates"),
            ]
        ),
        autoescape=True,
        # A misspelt variable is a bug to see in tests, not an empty spot on a page.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    @jinja2.pass_context
    def gettext(ctx: jinja2.runtime.Context, key: str, **params: object) -> str:
        lang: Lang = ctx["lang"]
        return translate(catalogue, lang, key, **params)

    @jinja2.pass_context
    def lang_url(ctx: jinja2.runtime.Context, lang: Lang) -> str:
        """The current page in another language (GET; a form that was posted is shown afresh)."""
        request: web.Request = ctx["request"]
        return str(request.rel_url.update_query(lang=lang))

    @jinja2.pass_context
    def decimal(ctx: jinja2.runtime.Context, value: float, digits: int = 1) -> str:
        """A number as the reader writes it: 12,5 in Russian, 12.5 in English."""
        text = f"{value:.{digits}f}"
        return text.replace(".", ",") if ctx["lang"] == "ru" else text

    def localtime(moment: datetime | None, fmt: TimeFormat = "datetime") -> str:
        return format_local(moment, tz, fmt)

    env.globals.update(_=gettext, lang_url=lang_url, LANG_NAMES=LANG_NAMES)
    env.filters.update(localtime=localtime, decimal=decimal)
    return env


def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    env = request.app[JINJA_ENV]
    html = env.get_template(template).render({"request": request, "lang": request[LANG_KEY], **(context or {})})
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
