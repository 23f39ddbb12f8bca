"""`appliance alerts test` and `appliance alerts status` as a person runs them (subprocesses), against a
real HTTP endpoint and a real Mosquitto of the test's own."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.alerts_support import SECRET, WebhookReceiver, webhook_receiver
from tests.test_alerts_mqtt import MOSQUITTO, Mosquitto, Subscriber, eventually, running

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, rx: WebhookReceiver) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(
        f'[appliance]\ndata_dir = "{tmp_path / "data"}"\n'
        '[alerts]\nconsole_url = "https://shop.example.org"\nretry_initial_s = 0.05\n'
        f'[[alerts.channels]]\nid = "hook"\nkind = "webhook"\nurl = "{rx.url}?token=url-token-secret"\n'
        f'secret = "{SECRET}"\nlanguage = "en"\n'
        '[[cameras]]\nid = "kassa"\nname = "Касса"\nmain_url = "rtsp://127.0.0.1:9/kassa"\n'
    )
    return path


async def appliance(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliance",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_a_test_alert_arrives_and_a_refusal_is_reported(tmp_path: Path) -> None:
    async with webhook_receiver() as rx:
        config = str(write_config(tmp_path, rx))
        code, out, err = await appliance("alerts", "test", "--channel", "hook", "--config", config)
        assert code == 0, err
        assert out.startswith("Delivered the test alert to 'hook' (webhook) in ")
        (got,) = rx.received
        assert got.doc["kind"] == "test" and got.doc["title"] == "Alert test"

        rx.answer = (401, {})
        code, out, err = await appliance("alerts", "test", "--channel", "hook", "--config", config)
        assert code == 1
        assert "the test alert to 'hook' (webhook) was refused: HTTP 401 Unauthorized: Unauthorized: bad token" in err
        assert "nothing is retried until it is fixed" in err

        rx.answer = (503, {})
        code, _, err = await appliance("alerts", "test", "--channel", "hook", "--config", config)
        assert code == 1 and "could not be delivered now: HTTP 503" in err and "keeps trying" in err

        code, out, err = await appliance("alerts", "status", "--config", config)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == "Alerts: on."
        header = next(line for line in lines if line.startswith("CHANNEL"))
        row = lines[lines.index(header) + 1].split()
        # channel, kind, enabled, waiting, delivered, failed, held back
        assert row[:7] == ["hook", "webhook", "yes", "1", "1", "1", "0"]
        assert "Not delivered" in out and "test notice: HTTP 401 Unauthorized: Unauthorized: bad token" in out
        assert len(rx.attempts) == 3  # status sends nothing
        for text in (out, err):
            assert SECRET not in text and "url-token-secret" not in text

        code, _, err = await appliance("alerts", "test", "--channel", "nope", "--config", config)
        assert code == 2 and "there is no alerts channel 'nope' (channels: hook)" in err


@pytest.mark.slow
@pytest.mark.skipif(not MOSQUITTO.exists(), reason="needs Mosquitto (apt-get install mosquitto)")
async def test_a_test_alert_to_an_mqtt_channel_is_published_by_the_command(tmp_path: Path) -> None:
    """The command has no daemon's connection to use: it keeps the channel's own link while it sends."""
    broker = Mosquitto(tmp_path)
    await broker.start()
    config = tmp_path / "appliance.toml"
    config.write_text(
        f'[appliance]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[[alerts.channels]]\nid = "ha"\nkind = "mqtt"\nurl = "mqtt://127.0.0.1:{broker.port}"\nlanguage = "en"\n'
        '[[cameras]]\nid = "kassa"\nname = "Касса"\nmain_url = "rtsp://127.0.0.1:9/kassa"\n'
    )
    subscriber = Subscriber(broker.port, clean_session=True)
    try:
        async with running(subscriber.run()):
            await eventually(lambda: subscriber.connects > 0)
            code, out, err = await appliance("alerts", "test", "--channel", "ha", "--config", str(config))
            assert code == 0, err
            assert out.startswith("Delivered the test alert to 'ha' (mqtt) in ")
            await eventually(lambda: bool(subscriber.on("appliance/events")))
        (event,) = subscriber.on("appliance/events")
        doc = json.loads(event.payload)
        assert doc["kind"] == "test" and doc["title"] == "Alert test" and "“ha”" in doc["body"]
        # The link also announced the camera to Home Assistant and said goodbye when the command ended.
        assert subscriber.on("homeassistant/binary_sensor/appliance_kassa_motion/config")
        assert [s.payload for s in subscriber.on("appliance/status")][-1] == b"offline"
    finally:
        await broker.stop()

    code, _, err = await appliance("alerts", "test", "--channel", "ha", "--config", str(config))
    assert code == 1, err
    assert f"could not be delivered now: MQTT broker 127.0.0.1:{broker.port} has not confirmed the alert" in err
    assert "The daemon keeps trying it." in err
