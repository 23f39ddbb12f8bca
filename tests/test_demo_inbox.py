"""What the demo's stand-in phone shows for each bus message."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from appliance.alerts.inbox import inbox_message
from appliance.cameras.messages import CameraOffline, ClipReady, EventOpened, TamperDetected

NAMES = {"cam1": "Вход"}
MSK = ZoneInfo("Europe/Moscow")
T = datetime(2026, 11, 27, 22, 45, 37, tzinfo=UTC)


def test_armed_motion_shows_the_snapshot_at_local_time() -> None:
    shown = inbox_message(EventOpened("cam1", "e1", "motion", T, True, b"\xff\xd8jpeg"), NAMES, MSK)
    assert shown == ("Движение: «Вход»", "Началось в 28.11.2026 01:45:37.", b"\xff\xd8jpeg")


def test_unarmed_motion_is_not_an_alert() -> None:
    assert inbox_message(EventOpened("cam1", "e1", "motion", T, False), NAMES, MSK) is None


def test_health_and_clip_messages_say_what_to_do() -> None:
    offline = inbox_message(CameraOffline("cam1", "e2", T), NAMES, MSK)
    assert offline is not None and "Проверьте питание и кабель" in offline[1]
    tamper = inbox_message(TamperDetected("cam1", "e3", "tamper_covered", T), NAMES, MSK)
    assert tamper is not None and tamper[0] == "Камера «Вход»: объектив закрыт"
    clip = inbox_message(ClipReady("e1", "cam1", "clips/cam1/x.mp4", None, "0" * 64), NAMES, MSK)
    assert clip is not None and clip[0] == "Видео готово: «Вход»"
