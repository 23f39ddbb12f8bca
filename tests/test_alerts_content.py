"""What alerts say: both languages, the store's time, the age of a late alert, links and zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from appliance.alerts.content import Facts, age_text, render, ru_plural, zones_hit
from appliance.alerts.settings import ALERT_KINDS

MOSCOW = ZoneInfo("Europe/Moscow")
AT = datetime(2026, 11, 27, 20, 15, 3, tzinfo=UTC)  # 23:15:03 in Moscow
CONSOLE = "https://shop.example.org"


def facts(kind: str = "motion", part: str = "snapshot", payload: dict[str, Any] | None = None, **kw: Any) -> Facts:
    return Facts(
        kind=kind,
        part=part,
        occurred_utc=AT,
        store_name="Магазин на Ленина",
        channel_id="owner",
        camera_name="Касса",
        event_id="kassa-20261127T201503.000Z",
        payload=payload,
        **kw,
    )


def test_a_motion_alert_in_both_languages_with_local_time_and_link() -> None:
    ru = render(facts(), "ru", MOSCOW, AT + timedelta(seconds=1), CONSOLE)
    assert ru.title == "Движение: Касса"
    assert ru.body == "Касса: движение в 23:15:03.\nМагазин на Ленина"
    assert ru.link == "https://shop.example.org/events/kassa-20261127T201503.000Z"
    en = render(facts(), "en", MOSCOW, AT + timedelta(seconds=1), CONSOLE)
    assert (en.title, en.body.splitlines()[0]) == ("Motion: Касса", "Касса: motion at 23:15:03.")
    assert render(facts(), "ru", MOSCOW, AT, "").link is None


def test_a_late_alert_says_how_long_ago_and_the_date_of_another_day() -> None:
    late = render(facts(), "ru", MOSCOW, AT + timedelta(minutes=5, seconds=20), CONSOLE)
    assert "Доставлено с опозданием: это было 5 мин назад." in late.body
    next_day = render(facts(), "en", MOSCOW, AT + timedelta(hours=26), CONSOLE)
    assert "motion at 27.11.2026 23:15." in next_day.body
    assert "Delivered late: this happened 1 d ago." in next_day.body
    assert "назад" not in render(facts(), "ru", MOSCOW, AT + timedelta(seconds=59), CONSOLE).body


def test_ages_and_plurals() -> None:
    assert age_text(timedelta(seconds=30), "ru") == "1 мин назад"
    assert age_text(timedelta(hours=2, minutes=5), "en") == "2 h 5 min ago"
    assert age_text(timedelta(hours=3), "ru") == "3 ч назад"
    assert age_text(timedelta(days=2, hours=1), "ru") == "2 дня назад"
    assert [ru_plural(n, "событие", "события", "событий") for n in (1, 2, 5, 11, 12, 21, 22, 25, 111)] == [
        "событие", "события", "событий", "событий", "событий", "событие", "события", "событий", "событий",
    ]  # fmt: skip


def test_the_summary_of_a_burst() -> None:
    three = render(facts(payload={"more_events": 3}), "ru", MOSCOW, AT, CONSOLE)
    assert "После прошлого оповещения ещё 3 события — они не присылались по отдельности." in three.body
    one = render(facts(payload={"more_events": 1}), "en", MOSCOW, AT, CONSOLE)
    assert "1 more event since the previous alert, not sent one by one." in one.body


def test_the_first_alert_names_the_zone_too() -> None:
    texts = render(facts(payload={"zones": [1, 3]}), "en", MOSCOW, AT, CONSOLE)
    assert texts.body.splitlines()[:2] == ["Касса: motion at 23:15:03.", "Motion in zone 1, 3."]


def test_the_clip_alert_names_the_zone_and_says_when_the_video_is_not_attached() -> None:
    ok = render(facts(part="clip", payload={"zones": [2]}, clip="attached"), "ru", MOSCOW, AT, CONSOLE)
    assert ok.title == "Видео: Касса" and "Движение в зоне 2." in ok.body
    big = render(facts(part="clip", clip="too_big"), "en", MOSCOW, AT, CONSOLE)
    assert "larger than this channel accepts: watch it through the link" in big.body
    link = render(facts(part="clip", clip="link"), "ru", MOSCOW, AT, CONSOLE)
    assert "Запись события готова: посмотрите её по ссылке." in link.body


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_every_kind_has_its_text(lang: Any) -> None:
    payloads = {
        "retention_shortened": {"oldest_kept_utc": AT.isoformat(), "freed_bytes": 10, "reason": "quota"},
        "disk_nearly_full": {"free_bytes": int(1.5 * 1024**3), "missing_bytes": 1024**3},
        "sms_budget_reached": {"day": "2026-11-27", "sent": 200, "budget": 200},
    }
    seen = set()
    for kind in (*ALERT_KINDS, "test"):
        texts = render(facts(kind, "notice", payloads.get(kind)), lang, MOSCOW, AT, CONSOLE)
        assert texts.title and texts.body.endswith("Магазин на Ленина") and "{" not in texts.body
        seen.add(texts.title)
    assert len(seen) == len(ALERT_KINDS) + 1  # each kind says what it is
    disk = render(facts("disk_nearly_full", "notice", payloads["disk_nearly_full"]), "ru", MOSCOW, AT, CONSOLE)
    assert "Свободно 1,5 ГБ" in disk.body and "ещё 1,0 ГБ" in disk.body


def test_zones_hit_by_the_centre_of_a_motion_box() -> None:
    left = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    right = [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]
    assert zones_hit([[0.6, 0.2, 0.8, 0.4]], [left, right]) == [2]
    assert zones_hit([[0.1, 0.1, 0.2, 0.2], [0.7, 0.7, 0.9, 0.9]], [left, right]) == [1, 2]
    assert zones_hit([], [left]) == []
