"""The configuration file: valid files load, bad ones are refused with the key path and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "appliance.example.toml"

CAM = {"id": "entrance", "name": "Вход", "main_url": "rtsp://10.0.0.2/main"}


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def example_with_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "entrance.password"
    secret.write_text("s3cret-Camera\n")
    text = EXAMPLE.read_text().replace("/etc/appliance/secrets/entrance.password", str(secret))
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    return path


def test_example_file_is_valid_and_reads_secret_file(tmp_path: Path) -> None:
    cfg = load_config(example_with_secret(tmp_path))
    assert cfg.appliance.timezone == "Europe/Moscow"
    assert cfg.appliance.locale == "ru"
    cam = cfg.cameras[0]
    assert cam.password is not None and cam.password.get_secret_value() == "s3cret-Camera"
    assert "s3cret" not in repr(cfg)
    assert cfg.database_url.startswith("sqlite+aiosqlite:///") and cfg.database_url.endswith("appliance.db")


def test_defaults_need_no_file_content() -> None:
    cfg = parse_config({})
    assert cfg.cameras == [] and cfg.console.port != cfg.portal.port


def test_bad_url_names_the_key_path() -> None:
    found = problems({"cameras": [CAM, {**CAM, "id": "till", "main_url": "http://10.0.0.3/x"}]})
    assert found == ["cameras[1].main_url: not an rtsp:// URL (got 'http://10.0.0.3/x'); write rtsp://host:554/path"]


def test_password_in_bad_url_is_masked_in_the_error() -> None:
    found = problems({"cameras": [{**CAM, "main_url": "http://admin:hunter22@10.0.0.3/x"}]})
    assert "hunter22" not in "\n".join(found)
    assert "admin:***@" in found[0]


def test_unknown_key_is_refused() -> None:
    found = problems({"cameras": [{**CAM, "colour": "red"}], "consle": {}})
    assert "cameras[0].colour: unknown key; remove it or check its spelling" in found
    assert "consle: unknown key; remove it or check its spelling" in found


def test_missing_required_key() -> None:
    assert problems({"cameras": [{"id": "x", "name": "X"}]}) == ["cameras[0].main_url: required key is missing"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"appliance": {"timezone": "Mars/Base"}}, "appliance.timezone: unknown time zone 'Mars/Base'"),
        ({"appliance": {"locale": "de"}}, "appliance.locale: Input should be 'ru' or 'en' (got 'de')"),
        (
            {"console": {"port": 70000}},
            "console.port: Input should be less than or equal to 65535 (got 70000)",
        ),
        ({"cameras": [{**CAM, "id": "Вход 1"}]}, "cameras[0].id: String should match pattern"),
        ({"cameras": [{**CAM, "id": "clips"}]}, "cameras[0].id: 'clips' is used by the appliance itself"),
        (
            {"database": {"url": "mysql://u:pw@h/db"}},
            "database.url: unsupported database URL 'mysql://u:***@h/db'",
        ),
        ({"cameras": [CAM, CAM]}, "two cameras share the id 'entrance'"),
        ({"portal": {"port": 8080}}, "console and portal listen on the same address"),
    ],
)
def test_bad_values_explain_what_is_allowed(data: dict[str, object], expected: str) -> None:
    assert any(expected in p for p in problems(data)), problems(data)


def test_secret_sources_are_exclusive_and_never_echoed(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("TopSecret-42")
    found = problems({"cameras": [{**CAM, "password": "Inline-99", "password_file": str(secret)}]})
    text = "\n".join(found)
    assert "give only one of password, password_file, password_env" in text
    assert "Inline-99" not in text and "TopSecret-42" not in text


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PW", "from-env-123")
    cfg = parse_config({"cameras": [{**CAM, "password_env": "CAM_PW"}]})
    assert cfg.cameras[0].password is not None
    assert cfg.cameras[0].password.get_secret_value() == "from-env-123"
    monkeypatch.delenv("CAM_PW")
    assert (
        "cameras[0]: password_env: the environment variable CAM_PW is not set"
        in problems({"cameras": [{**CAM, "password_env": "CAM_PW"}]})[0]
    )


def test_unreadable_secret_file_says_so(tmp_path: Path) -> None:
    found = problems({"cameras": [{**CAM, "password_file": str(tmp_path / "missing")}]})
    assert "password_file: cannot read" in found[0] and "check the path" in found[0]


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[appliance\nname = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "TOML syntax error" in info.value.problems[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "cannot read the file" in info.value.problems[0]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_check_config_cli(tmp_path: Path) -> None:
    good = run_cli("check-config", str(example_with_secret(tmp_path)))
    assert good.returncode == 0, good.stderr
    assert "OK (1 camera" in good.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[cameras]]\nid = "a"\nname = "A"\nmain_url = "rtsp://x/1"\n'
        '[[cameras]]\nid = "b"\nname = "B"\nmain_url = "ftp://x/2"\n'
    )
    result = run_cli("check-config", str(bad))
    assert result.returncode == 2
    assert "cameras[1].main_url: not an rtsp:// URL" in result.stderr


def test_daemon_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[appliance]\ndata_dir = "{tmp_path}"\ntimezone = "Nowhere/City"\n')
    result = run_cli("run", "--config", str(bad))
    assert result.returncode == 2
    assert "appliance.timezone: unknown time zone" in result.stderr
    assert not (tmp_path / "appliance.db").exists()


def test_usage_errors_exit_2() -> None:
    assert run_cli("no-such-command").returncode == 2
    assert run_cli("--version").stdout.startswith("appliance ")


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ({"events": {"armed": "mnday 10:00-12:00"}}, "cameras[0].events.armed: arming window 'mnday 10:00-12:00'"),
        ({"zones": [[[0, 0], [2, 0], [1, 1]]]}, "cameras[0].zones: polygon[0] has a point outside 0..1"),
        (
            {"masks": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
            "cameras[0]: zones, masks: the zones and masks leave no pixel to watch in the 320×180 analysed "
            "picture; draw larger zones or smaller masks",
        ),
        (
            {"zones": [[[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]]], "masks": [[[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]]]},
            "cameras[0]: zones, masks: the zones and masks leave no pixel to watch",
        ),
        ({"masks": [[[0, 0], [1, 0]]]}, "cameras[0].masks: polygon[0] has 2 points"),
        ({"motion": {"sensitivity": "max"}}, "cameras[0].motion.sensitivity: Input should be 'low', 'medium'"),
        ({"retention": {"mode": "all"}}, "cameras[0].retention.mode: Input should be 'continuous', 'motion'"),
        ({"events": {"max_event_s": 30, "merge_gap_s": 60}}, "cameras[0].events: max_event_s (30.0) must be longer"),
    ],
)
def test_camera_detection_settings_are_checked(camera: dict[str, object], expected: str) -> None:
    found = problems({"cameras": [{**CAM, **camera}]})
    assert any(p.startswith(expected) for p in found), found


def test_camera_settings_become_policies() -> None:
    cfg = parse_config(
        {"cameras": [{**CAM, "retention": {"mode": "events", "events_days": 60}, "events": {"pre_roll_s": 3}}]}
    )
    policy = cfg.cameras[0].retention_policy()
    assert (policy.mode.value, policy.events_days, policy.pre_roll_s) == ("events", 60, 3)
    assert cfg.cameras[0].events.schedule().is_always
