"""What every web app of the appliance starts from: languages, error pages, templates,
security headers and its own static folder."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp.typedefs import Middleware

from appliance.config import Config
from appliance.web.errors import error_pages
from appliance.web.i18n import Catalogue, i18n_middleware
from appliance.web.security import install_security_headers
from appliance.web.templating import JINJA_ENV, make_environment


def base_app(
    cfg: Config, package: str, catalogue: Catalogue, *, client_max_size: int, middlewares: Sequence[Middleware] = ()
) -> web.Application:
    """An app for `package` (which has `templates/` and `static/` folders).

    Middleware order, outermost first: the language is known before anything can fail, so that
    the error pages, which catch everything below them, speak it; the app's own middlewares
    (sign-in, CSRF) run inside, so their refusals are rendered as error pages too.
    """
    app = web.Application(
        middlewares=[i18n_middleware(cfg.appliance.locale), error_pages, *middlewares],
        client_max_size=client_max_size,
    )
    env = make_environment(package, catalogue, ZoneInfo(cfg.appliance.timezone))
    env.globals["store_name"] = cfg.appliance.name
    app[JINJA_ENV] = env
    install_security_headers(app)
    module_file = importlib.import_module(package).__file__
    assert module_file is not None, f"{package} is not a regular package"
    app.router.add_static("/static", Path(module_file).with_name("static"), name="static")
    return app
