"""Cross-site request forgery protection for every form a browser can send.

Each app says which token a request must carry (its session's token, or a pre-login cookie);
every request that changes something must echo it in the form field `csrf_token`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from appliance.web.errors import PageError
from appliance.web.i18n import Text

CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# 32 random bytes: far beyond guessing, short enough for a hidden form field.
TOKEN_BYTES = 32

MESSAGES = {
    "csrf.title": Text("Форма устарела", "The form has expired"),
    "csrf.hint": Text(
        "Страница была открыта слишком давно или форма пришла с другой страницы, поэтому действие не "
        "выполнено. Вернитесь назад, обновите страницу и отправьте форму ещё раз.",
        "The page was open for too long or the form came from another page, so nothing was done. "
        "Go back, reload the page and send the form again.",
    ),
}

TokenGetter = Callable[[web.Request], str | None]


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def tokens_match(sent: object, expected: str | None) -> bool:
    if expected is None or not isinstance(sent, str):
        return False
    return secrets.compare_digest(sent.encode(), expected.encode())


def csrf_middleware(expected_token: TokenGetter) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in SAFE_METHODS:
            form = await request.post()
            if not tokens_match(form.get(CSRF_FIELD), expected_token(request)):
                raise PageError(403, "csrf")
        return await handler(request)

    return middleware
