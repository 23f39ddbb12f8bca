"""Languages of the web pages: Russian by default, English on request.

A page's language comes from, in order: `?lang=` in the address (remembered in a cookie), the
cookie, the browser's Accept-Language, the store's configured locale. Messages live in small
typed catalogues (one per app plus a shared one); every message has both languages by
construction, and an unknown key fails loudly instead of showing a raw key to a person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

Lang = Literal["ru", "en"]
LANGS: tuple[Lang, ...] = get_args(Lang)

# Each language is offered under its own name, whatever the page's language.
LANG_NAMES: dict[Lang, str] = {"ru": "Русский", "en": "English"}

LANG_QUERY = "lang"
LANG_COOKIE = "lang"
# A language choice is a preference, not a secret: keep it for a year.
LANG_COOKIE_MAX_AGE_S = 365 * 24 * 3600
# Accept-Language headers are client-controlled; only this many entries are looked at.
MAX_ACCEPT_LANGUAGE_ITEMS = 16

LANG_KEY: web.RequestKey[Lang] = web.RequestKey("lang")


@dataclass(frozen=True, slots=True)
class Text:
    ru: str
    en: str

    def get(self, lang: Lang) -> str:
        return self.ru if lang == "ru" else self.en


Catalogue = Mapping[str, Text]


def merge(*catalogues: Catalogue) -> dict[str, Text]:
    """One catalogue from several; a key defined twice is a programming error."""
    out: dict[str, Text] = {}
    for cat in catalogues:
        clash = out.keys() & cat.keys()
        if clash:
            raise ValueError(f"message keys defined twice: {sorted(clash)}")
        out.update(cat)
    return out


def translate(catalogue: Catalogue, lang: Lang, key: str, **params: object) -> str:
    """The message `key` in `lang`, with `{name}` placeholders filled from `params`."""
    text = catalogue[key].get(lang)
    return text.format(**params) if params else text


def as_lang(value: str | None) -> Lang | None:
    if value is None:
        return None
    value = value.strip().lower()
    for lang in LANGS:
        if value == lang:
            return lang
    return None


def from_accept_language(header: str) -> Lang | None:
    """The supported language the browser likes best (RFC 9110 q-values), or None."""
    best: tuple[float, Lang] | None = None
    for position, item in enumerate(header.split(",")[:MAX_ACCEPT_LANGUAGE_ITEMS]):
        tag, _, params = item.strip().partition(";")
        lang = as_lang(tag.split("-")[0])
        if lang is None:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        # Ties go to the entry written first; q=0 means "not acceptable".
        score = q - position * 1e-6
        if q > 0 and (best is None or score > best[0]):
            best = (score, lang)
    return best[1] if best else None


def negotiate(request: web.Request, default: Lang) -> Lang:
    return (
        as_lang(request.query.get(LANG_QUERY))
        or as_lang(request.cookies.get(LANG_COOKIE))
        or from_accept_language(request.headers.get("Accept-Language", ""))
        or default
    )


def i18n_middleware(default: Lang) -> Middleware:
    """Sets request[LANG_KEY]; an explicit ?lang= choice is remembered in a cookie."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[LANG_KEY] = negotiate(request, default)
        chosen = as_lang(request.query.get(LANG_QUERY))
        response = await handler(request)
        if chosen is not None and request.cookies.get(LANG_COOKIE) != chosen:
            response.set_cookie(
                LANG_COOKIE,
                chosen,
                max_age=LANG_COOKIE_MAX_AGE_S,
                path="/",
                httponly=True,
                samesite="Lax",
                secure=request.secure,
            )
        return response

    return middleware
