"""Local time on pages, escaping, and templates that fail loudly rather than render half a page."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import jinja2
import pytest

from appliance.portal.messages import CATALOGUE
from appliance.web.templating import make_environment
from appliance.web.timefmt import format_local

MOSCOW = ZoneInfo("Europe/Moscow")


def test_utc_is_shown_in_the_stores_zone() -> None:
    assert format_local(datetime(2026, 11, 27, 20, 40, tzinfo=UTC), MOSCOW) == "27.11.2026 23:40"
    assert format_local(datetime(2026, 12, 31, 21, 5, tzinfo=UTC), MOSCOW) == "01.01.2027 00:05"
    assert format_local(datetime(2026, 11, 27, 20, 40, tzinfo=UTC), MOSCOW, "time") == "23:40"


def test_naive_values_are_taken_as_utc_and_none_is_a_dash() -> None:
    assert format_local(datetime(2026, 11, 27, 20, 40), MOSCOW) == "27.11.2026 23:40"
    assert format_local(None, MOSCOW) == "—"


def test_summer_time_is_respected_where_it_exists() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert format_local(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), berlin, "time") == "14:00"
    assert format_local(datetime(2026, 1, 1, 12, 0, tzinfo=UTC), berlin, "time") == "13:00"


@pytest.fixture
def env() -> jinja2.Environment:
    return make_environment("appliance.portal", CATALOGUE, MOSCOW)


def test_autoescape_is_on_even_for_strings_from_code(env: jinja2.Environment) -> None:
    out = env.from_string("{{ x }}").render(x="<script>")
    assert out == "&lt;script&gt;"


def test_undefined_variables_are_errors(env: jinja2.Environment) -> None:
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()


def test_filters_speak_the_page_language(env: jinja2.Environment) -> None:
    template = env.from_string('{{ _("portal.title") }} {{ 12.5|decimal }} {{ t|localtime }}')
    moment = datetime(2026, 11, 27, 20, 40, tzinfo=UTC)
    assert template.render(lang="ru", t=moment) == "Wi-Fi для гостей 12,5 27.11.2026 23:40"
    assert template.render(lang="en", t=moment) == "Guest Wi-Fi 12.5 27.11.2026 23:40"
