"""Language choice and the message catalogues of both web apps."""

from __future__ import annotations

import string

import pytest
from aiohttp.test_utils import make_mocked_request

from appliance.console.messages import CATALOGUE as CONSOLE
from appliance.portal.messages import CATALOGUE as PORTAL
from appliance.web.i18n import Catalogue, Text, from_accept_language, merge, negotiate, translate


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", None),
        ("ru", "ru"),
        ("en-US,en;q=0.9", "en"),
        ("de-DE,de;q=0.9,en;q=0.8,ru;q=0.7", "en"),
        ("ru-RU;q=0.5, en;q=0.6", "en"),
        ("en;q=0.5, ru;q=0.5", "en"),  # a tie goes to the first
        ("en;q=0, ru;q=0.1", "ru"),  # q=0 means "not wanted"
        ("EN", "en"),
        ("fr, de", None),
        ("en;q=abc, ru", "ru"),  # a broken q-value is ignored, not a crash
        (";;;,,,=", None),
    ],
)
def test_accept_language(header: str, expected: str | None) -> None:
    assert from_accept_language(header) == expected


def test_only_the_first_entries_of_a_huge_header_are_read() -> None:
    assert from_accept_language("fr," * 1000 + "en") is None


def test_choice_order_is_query_then_cookie_then_browser_then_store_default() -> None:
    def req(path: str = "/", cookie: str | None = None, accept: str | None = None) -> str:
        headers = {}
        if cookie:
            headers["Cookie"] = f"lang={cookie}"
        if accept:
            headers["Accept-Language"] = accept
        return negotiate(make_mocked_request("GET", path, headers=headers), "ru")

    assert req() == "ru"
    assert req(accept="en") == "en"
    assert req(cookie="ru", accept="en") == "ru"
    assert req("/?lang=en", cookie="ru", accept="ru") == "en"
    assert req("/?lang=xx", cookie="zz", accept="en") == "en"  # unknown values are skipped
    assert negotiate(make_mocked_request("GET", "/"), "en") == "en"


def test_merge_refuses_a_key_defined_twice() -> None:
    with pytest.raises(ValueError, match=r"a\.b"):
        merge({"a.b": Text("x", "y")}, {"a.b": Text("z", "w")})


def test_translate_fills_placeholders_and_fails_loudly_on_unknown_keys() -> None:
    cat = {"hello": Text("Привет, {name}", "Hello, {name}")}
    assert translate(cat, "ru", "hello", name="Анна") == "Привет, Анна"
    assert translate(cat, "en", "hello", name="Anna") == "Hello, Anna"
    with pytest.raises(KeyError):
        translate(cat, "en", "missing")


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("catalogue", [CONSOLE, PORTAL], ids=["console", "portal"])
def test_every_message_exists_in_both_languages_with_the_same_placeholders(catalogue: Catalogue) -> None:
    for key, text in catalogue.items():
        assert text.ru.strip() and text.en.strip(), key
        assert _placeholders(text.ru) == _placeholders(text.en), key
        assert text.ru != text.en, f"{key} looks untranslated"
