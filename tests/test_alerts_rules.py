"""Alert rules (pure) and the `[alerts]` settings: what goes to which channel, when, and bad configs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from appliance.alerts.rules import ChannelRules, Debounce, Send, Suppress, window_end
from appliance.alerts.settings import ChannelSettings
from appliance.cameras.events import ArmSchedule
from appliance.config import ConfigError, parse_config

MOSCOW = ZoneInfo("Europe/Moscow")
# Friday 27 November 2026, 23:15 in Moscow (UTC+3).
FRIDAY_2315 = datetime(2026, 11, 27, 20, 15, tzinfo=UTC)
SECRET = "0123456789abcdef-secret"


def rules(**settings: Any) -> ChannelRules:
    return ChannelRules(ChannelSettings.model_validate({"id": "c", "kind": "webpush", **settings}), MOSCOW)


def test_kinds_and_cameras_choose_the_channels_alerts() -> None:
    only = rules(kinds=["camera_offline"], cameras=["kassa"])
    assert only.decide("motion", "kassa", FRIDAY_2315) is None
    assert only.decide("camera_offline", "vhod", FRIDAY_2315) is None
    assert only.decide("camera_offline", "kassa", FRIDAY_2315) == Send()
    assert rules(enabled=False).decide("motion", "kassa", FRIDAY_2315) is None
    assert rules().decide("disk_nearly_full", None, FRIDAY_2315) == Send()


def test_the_schedule_arms_motion_only() -> None:
    closed = rules(schedule="mon-fri 20:00-08:00")
    assert closed.decide("motion", "kassa", FRIDAY_2315) == Send()
    afternoon = FRIDAY_2315 - timedelta(hours=8)  # 15:15 Moscow
    assert closed.decide("motion", "kassa", afternoon) is None
    assert closed.decide("camera_offline", "kassa", afternoon) == Send()


def test_pause_and_suspension_mute_camera_alerts_not_appliance_notices() -> None:
    r = rules()
    assert r.decide("motion", "kassa", FRIDAY_2315, muted="paused") == Suppress("paused")
    assert r.decide("tamper_covered", "kassa", FRIDAY_2315, muted="suspended") == Suppress("suspended")
    assert r.decide("sms_budget_reached", None, FRIDAY_2315) == Send()


def test_quiet_hours_drop_motion_and_hold_the_rest_until_they_end() -> None:
    quiet = rules(quiet_hours="23:00-07:00")
    assert quiet.decide("motion", "kassa", FRIDAY_2315) == Suppress("quiet_hours")
    held = quiet.decide("camera_offline", "kassa", FRIDAY_2315)
    assert isinstance(held, Send) and held.not_before is not None
    assert held.not_before.astimezone(MOSCOW) == datetime(2026, 11, 28, 7, 0, tzinfo=MOSCOW)
    # Never ending quiet hours drop everything rather than hold it forever.
    assert rules(quiet_hours="always").decide("camera_offline", "kassa", FRIDAY_2315) == Suppress("quiet_hours")


def test_cooldown_sends_one_alert_per_burst_and_counts_the_rest() -> None:
    r = rules(cooldown_s=60)
    t = FRIDAY_2315
    assert r.decide("motion", "kassa", t) == Send()
    assert r.decide("motion", "kassa", t + timedelta(seconds=20)) == Suppress("cooldown")
    assert r.decide("motion", "vhod", t + timedelta(seconds=20)) == Send()  # per camera
    assert r.decide("motion", "kassa", t + timedelta(seconds=59)) == Suppress("cooldown")
    assert r.decide("motion", "kassa", t + timedelta(seconds=60)) == Send(more_events=2)
    assert r.decide("motion", "kassa", t + timedelta(seconds=200)) == Send()
    assert rules(cooldown_s=0).decide("motion", "kassa", t) == Send()


def test_cooldown_remembered_across_a_restart() -> None:
    r = rules(cooldown_s=60)
    r.remember("kassa", FRIDAY_2315, held=4)
    assert r.decide("motion", "kassa", FRIDAY_2315 + timedelta(seconds=30)) == Suppress("cooldown")
    assert r.decide("motion", "kassa", FRIDAY_2315 + timedelta(seconds=90)) == Send(more_events=5)


def test_debounce_and_window_end() -> None:
    d = Debounce(timedelta(hours=6))
    assert d.allow("disk", FRIDAY_2315)
    assert not d.allow("disk", FRIDAY_2315 + timedelta(hours=5))
    assert d.allow("retention:kassa", FRIDAY_2315)
    assert d.allow("disk", FRIDAY_2315 + timedelta(hours=6))
    schedule = ArmSchedule.parse("fri 23:00-23:30")
    assert window_end(schedule, FRIDAY_2315, MOSCOW) == FRIDAY_2315 + timedelta(minutes=15)
    assert window_end(ArmSchedule.always(), FRIDAY_2315, MOSCOW) is None


# -------------------------------------------------------------------------------- settings ---


def config(channels: list[dict[str, Any]], **alerts: Any) -> Any:
    return parse_config(
        {
            "alerts": {"channels": channels, **alerts},
            "cameras": [{"id": "kassa", "name": "Касса", "main_url": "rtsp://10.0.0.2/1"}],
        },
        "test.toml",
    )


def problems(channels: list[dict[str, Any]], **alerts: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        config(channels, **alerts)
    return err.value.problems


def test_a_webhook_needs_its_url_and_a_signing_secret() -> None:
    assert problems([{"id": "crm", "kind": "webhook", "secret": SECRET}]) == [
        "alerts.channels[0]: url: a webhook channel needs its address; set url, url_file or url_env "
        "(config/appliance.example.toml shows one for each kind)"
    ]
    (short,) = problems([{"id": "crm", "kind": "webhook", "url": "https://h.example/x", "secret": "short"}])
    assert short.startswith("alerts.channels[0]: secret: a webhook signs its requests with a key of at least 16")
    assert "short" not in short.split(":", 1)[1].replace("secret:", "")  # the bad value is not echoed
    (ftp,) = problems([{"id": "crm", "kind": "webhook", "url": "ftp://h.example/x", "secret": SECRET}])
    assert "http:// or https://" in ftp


def test_channel_mistakes_name_the_key() -> None:
    (mqtt,) = problems([{"id": "ha", "kind": "mqtt", "url": "http://broker"}])
    assert mqtt.startswith("alerts.channels[0]: url: an mqtt channel needs mqtt://")
    (camera,) = problems([{"id": "tg", "kind": "apprise", "url": "json://h/x", "cameras": ["sklad"]}])
    # A cross-check of the whole file: it names the key itself.
    assert camera.endswith(
        "alerts.channels[0].cameras: no camera 'sklad' (cameras: kassa); fix the id or write cameras = \"all\""
    )
    (twice,) = problems([{"id": "a", "kind": "webpush"}, {"id": "a", "kind": "webpush"}])
    assert "'a' is used twice" in twice
    (schedule,) = problems([{"id": "a", "kind": "webpush", "quiet_hours": "23-7"}])
    assert schedule.startswith("alerts.channels[0].quiet_hours: quiet_hours: arming window '23-7'")
    (kind,) = problems([{"id": "a", "kind": "webpush", "kinds": ["motion", "fire"]}])
    assert kind.startswith("alerts.channels[0].kinds[1]:")
    (url,) = problems([], console_url="shop.example.org")
    assert url.startswith("alerts.console_url: not an http(s) address")
    (contact,) = problems([], vapid_contact="owner@example.org")
    assert contact.startswith("alerts.vapid_contact: push services accept only a mailto: or https: contact")
    (mail,) = problems([], vapid_contact="mailto:owner")
    assert mail.startswith("alerts.vapid_contact: not an e-mail address") and "mailto:owner@example.org" in mail
    assert config([], vapid_contact=" mailto:owner@example.org ").alerts.vapid_contact == "mailto:owner@example.org"


def test_secrets_come_from_files_and_are_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tg.url").write_text("tgram://123456789:AAHbotTOKENvalue/987654\n")
    monkeypatch.setenv("HOOK_KEY", SECRET)
    cfg = config(
        [
            {"id": "tg", "kind": "apprise", "url_file": str(tmp_path / "tg.url")},
            {
                "id": "crm",
                "kind": "webhook",
                "url": "https://u:pw-in-url@h.example/x?token=abcdefgh12",
                "secret_env": "HOOK_KEY",
            },
        ],
        console_url="https://shop.example.org/",
    )
    tg, crm = cfg.alerts.channels
    assert tg.url is not None and tg.url.get_secret_value() == "tgram://123456789:AAHbotTOKENvalue/987654"
    assert "AAHbot" not in repr(cfg) and SECRET not in repr(cfg)
    assert "123456789:AAHbotTOKENvalue" in tg.secret_values()
    assert {SECRET, "pw-in-url", "abcdefgh12"} <= set(crm.secret_values())
    assert cfg.alerts.console_url == "https://shop.example.org"
    (missing,) = problems([{"id": "tg", "kind": "apprise", "url_file": str(tmp_path / "nope")}])
    assert missing.startswith("alerts.channels[0]: url_file: cannot read")
