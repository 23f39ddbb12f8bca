"""The MQTT channel against a real Mosquitto: each test starts its own broker on a free port (never the
system one), subscribes with aiomqtt like Home Assistant would, and restarts the broker mid-way."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from appliance.alerts.channel import Alert, DeliveryError
from appliance.alerts.channels import ChannelContext
from appliance.alerts.channels.mqtt import (
    BrokerAddress,
    MqttChannel,
    Topics,
    alert_messages,
    create,
    discovery_messages,
)
from appliance.alerts.settings import ChannelSettings
from appliance.config import Config, parse_config
from tests.gst_peer import free_port

MOSQUITTO = Path("/usr/sbin/mosquitto")
T0 = datetime(2026, 11, 27, 20, 15, 3, tzinfo=UTC)
JPEG_1 = b"\xff\xd8\xff\xe0" + os.urandom(20_000)
JPEG_2 = b"\xff\xd8\xff\xe0" + os.urandom(20_000)

pytestmark = pytest.mark.skipif(not MOSQUITTO.exists(), reason="needs Mosquitto (apt-get install mosquitto)")


async def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class Mosquitto:
    """A broker of the test's own. Persistence is on (saved every second), so that after a crash the
    restarted broker still knows the subscriber's session and keeps what is published for it until
    it is back: the test sees every message whichever of the two reconnects first."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "user root\n"
            "persistence true\n"
            "autosave_interval 1\n"
            f"persistence_location {directory}/\n"
            "log_type error\n"
            "log_type warning\n"
            f"log_dest file {self.log}\n"
        )
        self.db = directory / "mosquitto.db"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            str(MOSQUITTO), "-c", str(self.conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")

    async def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(how)
            await self.process.wait()

    def saved_since(self, moment: float) -> bool:
        return self.db.exists() and self.db.stat().st_mtime > moment


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path)
    await mosquitto.start()
    try:
        yield mosquitto
    finally:
        await mosquitto.stop()


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Subscriber:
    """Like Home Assistant: subscribed to everything the appliance and discovery publish, QoS 1, with a
    persistent session, reconnecting when the broker comes back."""

    port: int
    identifier: str = "test-subscriber"
    clean_session: bool = False
    seen: list[Seen] = field(default_factory=list)
    connects: int = 0

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.identifier, clean_session=self.clean_session
                ) as client:
                    await client.subscribe([("appliance/#", 1), ("homeassistant/#", 1)])
                    self.connects += 1
                    async for message in client.messages:
                        payload = message.payload
                        assert isinstance(payload, bytes)
                        self.seen.append(Seen(str(message.topic), payload, message.retain))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def on(self, topic: str) -> list[Seen]:
        return [s for s in self.seen if s.topic == topic]

    def event_ids(self, camera: str = "kassa") -> list[str]:
        return [json.loads(s.payload)["alert_id"] for s in self.on(f"appliance/{camera}/events")]


@contextlib.asynccontextmanager
async def running(coro: Any) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _cfg(tmp_path: Path) -> Config:
    return parse_config(
        {
            "appliance": {"data_dir": str(tmp_path), "locale": "ru"},
            "cameras": [
                {"id": "kassa", "name": "Касса", "main_url": "rtsp://10.0.0.2/main"},
                {"id": "sklad", "name": "Склад", "main_url": "rtsp://10.0.0.3/main", "events": {"max_event_s": 120}},
                {"id": "off", "name": "Выключена", "enabled": False, "main_url": "rtsp://10.0.0.4/main"},
            ],
        }
    )


def _alert(alert_id: str, part: str = "snapshot", at: datetime = T0, **overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "alert_id": alert_id,
        "kind": "motion",
        "part": part,
        "title": "Движение: «Касса»",
        "body": "28.11.2026 01:15:03",
        "occurred_utc": at,
        "camera_id": "kassa",
        "camera_name": "Касса",
        "event_id": f"kassa-{alert_id}",
        "link": f"https://shop.example.org/events/kassa-{alert_id}",
        "snapshot_jpeg": JPEG_1,
        "data": {"store": "Магазин", "age_s": 0.4},
    }
    values.update(overrides)
    return Alert(**values)


def _channel(tmp_path: Path, port: int, **kwargs: Any) -> MqttChannel:
    # Quick reconnects for the test; the daemon uses the module's defaults.
    return MqttChannel(
        "ha",
        f"mqtt://127.0.0.1:{port}",
        cameras=[c for c in _cfg(tmp_path).cameras if c.enabled],
        reconnect_initial_s=0.1,
        reconnect_max_s=0.5,
        **kwargs,
    )


# ------------------------------------------------------------------------- end to end ---


async def test_discovery_events_snapshot_and_motion_state_arrive(tmp_path: Path, broker: Mosquitto) -> None:
    subscriber = Subscriber(broker.port, clean_session=True)
    channel = _channel(tmp_path, broker.port)
    async with running(subscriber.run()):
        await eventually(lambda: subscriber.connects == 1)
        async with running(channel.run()) as component:
            await eventually(lambda: len(subscriber.on("appliance/status")) == 1)

            sensor = json.loads(subscriber.on("homeassistant/binary_sensor/appliance_kassa_motion/config")[0].payload)
            assert sensor == {
                "name": "Движение",
                "unique_id": "appliance_kassa_motion",
                "device_class": "motion",
                "state_topic": "appliance/kassa/motion",
                "payload_on": "ON",
                "payload_off": "OFF",
                "off_delay": 360,
                "device": {
                    "identifiers": ["appliance_kassa"],
                    "name": "Касса",
                    "manufacturer": "Store appliance",
                    "model": "IP camera",
                    "sw_version": sensor["device"]["sw_version"],
                },
                "availability_topic": "appliance/status",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
            camera = json.loads(subscriber.on("homeassistant/camera/appliance_sklad/config")[0].payload)
            assert camera["topic"] == "appliance/sklad/snapshot" and camera["unique_id"] == "appliance_sklad_camera"
            assert camera["device"]["identifiers"] == ["appliance_sklad"] and camera["name"] is None
            configs = [s.topic for s in subscriber.seen if s.topic.endswith("/config")]
            assert len(configs) == 4 and not any("_off" in t for t in configs)  # the disabled camera is left out
            assert subscriber.on("appliance/status")[0].payload == b"online"

            await channel.send(_alert("1"))
            await eventually(lambda: len(subscriber.on("appliance/kassa/motion")) == 1)
            [event] = subscriber.on("appliance/kassa/events")
            doc = json.loads(event.payload)
            assert doc["alert_id"] == "1" and doc["kind"] == "motion" and doc["part"] == "snapshot"
            assert doc["link"] == "https://shop.example.org/events/kassa-1" and doc["store"] == "Магазин"
            assert doc["has_snapshot"] is True and not event.retain
            assert subscriber.on("appliance/kassa/snapshot")[0].payload == JPEG_1
            assert subscriber.on("appliance/kassa/motion")[0].payload == b"ON"

            await channel.send(_alert("2", part="clip", at=T0 + timedelta(seconds=1), snapshot_jpeg=JPEG_2))
            await eventually(lambda: len(subscriber.on("appliance/kassa/motion")) == 2)
            assert subscriber.on("appliance/kassa/motion")[1].payload == b"OFF"
            notice = _alert("3", kind="disk_nearly_full", part="notice", camera_id=None, snapshot_jpeg=None)
            await channel.send(notice)
            await eventually(lambda: len(subscriber.on("appliance/events")) == 1)

            # What a newcomer finds retained: the newest snapshot, the state, "online" and the discovery.
            late = Subscriber(broker.port, identifier="late", clean_session=True)
            async with running(late.run()):
                await eventually(lambda: len(late.on("appliance/kassa/snapshot")) == 1)
                await eventually(lambda: len(late.on("homeassistant/camera/appliance_kassa/config")) == 1)
                assert late.on("appliance/kassa/snapshot")[0].payload == JPEG_2
                assert all(s.retain for s in late.seen)
                assert late.on("appliance/kassa/events") == []

            component.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await component
            await eventually(lambda: subscriber.on("appliance/status")[-1].payload == b"offline")


async def test_broker_restart_loses_nothing_and_repeats_nothing(tmp_path: Path, broker: Mosquitto) -> None:
    subscriber = Subscriber(broker.port)
    channel = _channel(tmp_path, broker.port, publish_wait_s=0.5)
    async with running(subscriber.run()):
        async with running(channel.run()):
            await eventually(lambda: channel.connected and subscriber.connects == 1)
            await channel.send(_alert("1"))
            await eventually(lambda: subscriber.event_ids() == ["1"])

            # The broker crashes (its autosave has the subscriber's session, as a real broker's would).
            subscribed = time.time()
            await eventually(lambda: broker.saved_since(subscribed))
            await broker.stop(signal.SIGKILL)
            await eventually(lambda: not channel.connected)
            outage = [_alert(str(n), at=T0 + timedelta(seconds=n)) for n in (2, 3, 4)]
            for alert in outage:
                with pytest.raises(DeliveryError) as caught:
                    await channel.send(alert)
                assert not caught.value.permanent and f"127.0.0.1:{broker.port}" in caught.value.provider_message
            assert channel.queued == 3

        # The channel's connection is restarted (as the supervisor restarts a component) once the
        # subscriber is back: a discovery message published before the subscriber returns would be
        # queued in its session, and Mosquitto delivers such a message with its retain flag set,
        # which this test could not tell from the retained copy a new subscription gets.
        await broker.start()
        await eventually(lambda: subscriber.connects == 2)
        async with running(channel.run()):
            await eventually(lambda: subscriber.event_ids() == ["1", "2", "3", "4"])
            assert channel.queued == 0
            # The dispatcher retries the alerts that failed: they went out already and are not published again.
            for alert in outage:
                await channel.send(alert)
            await channel.send(_alert("5", at=T0 + timedelta(seconds=5)))
            await eventually(lambda: subscriber.event_ids()[-1:] == ["5"])
            assert subscriber.event_ids() == ["1", "2", "3", "4", "5"]
            # Discovery and "online" again after the broker came back (a broker without persistence
            # forgets them); the subscriber also gets the retained copies when it subscribes again:
            # those are not counted.
            live = [s for s in subscriber.seen if not s.retain]
            assert len([s for s in live if s.topic == "homeassistant/camera/appliance_kassa/config"]) == 2
            statuses = [s.payload for s in live if s.topic == "appliance/status"]
            assert statuses == [b"online", b"online"]
            assert [s.payload for s in live if s.topic == "appliance/kassa/motion"] == [b"ON"] * 5


async def test_an_alert_sent_before_the_first_connection_waits_for_it(tmp_path: Path, broker: Mosquitto) -> None:
    """At start-up (and in `appliance alerts test`) the first alert may come before the connection is up."""
    subscriber = Subscriber(broker.port, clean_session=True)
    channel = _channel(tmp_path, broker.port)
    async with running(subscriber.run()):
        await eventually(lambda: subscriber.connects == 1)
        sending = asyncio.create_task(channel.send(_alert("1")))
        await asyncio.sleep(0.3)
        assert not sending.done()
        async with running(channel.run()):
            await sending
            await eventually(lambda: subscriber.event_ids() == ["1"])


async def test_home_assistant_restart_gets_discovery_again(tmp_path: Path, broker: Mosquitto) -> None:
    subscriber = Subscriber(broker.port, clean_session=True)
    channel = _channel(tmp_path, broker.port)
    async with running(subscriber.run()), running(channel.run()):
        await eventually(lambda: len(subscriber.on("homeassistant/camera/appliance_kassa/config")) == 1)
        async with aiomqtt.Client("127.0.0.1", broker.port) as home_assistant:
            await home_assistant.publish("homeassistant/status", b"online", qos=1)
        await eventually(lambda: len(subscriber.on("homeassistant/camera/appliance_kassa/config")) == 2)


async def test_appliance_that_dies_is_shown_offline_by_its_last_will(broker: Mosquitto) -> None:
    subscriber = Subscriber(broker.port, clean_session=True)
    code = (
        "import asyncio, sys\n"
        "from appliance.alerts.channels.mqtt import MqttChannel\n"
        "asyncio.run(MqttChannel('ha', sys.argv[1]).run())\n"
    )
    async with running(subscriber.run()):
        await eventually(lambda: subscriber.connects == 1)
        appliance = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, f"mqtt://127.0.0.1:{broker.port}", cwd=Path(__file__).parents[1]
        )
        try:
            await eventually(lambda: [s.payload for s in subscriber.on("appliance/status")] == [b"online"])
        finally:
            appliance.kill()
            await appliance.wait()
        await eventually(lambda: [s.payload for s in subscriber.on("appliance/status")] == [b"online", b"offline"])


async def test_unreachable_broker_is_an_outage_naming_it_without_the_password(tmp_path: Path) -> None:
    port = free_port()
    channel = MqttChannel("ha", f"mqtt://user:pa55word@127.0.0.1:{port}", reconnect_initial_s=0.1, reconnect_max_s=0.2)
    async with running(channel.run()):
        await asyncio.sleep(0.3)
        with pytest.raises(DeliveryError) as caught:
            await channel.send(_alert("1"))
    message = caught.value.provider_message
    assert not caught.value.permanent and f"127.0.0.1:{port}" in message and "pa55word" not in message
    assert channel.queued == 1


# ------------------------------------------------------------------------- pure pieces ---


def test_an_older_alert_does_not_put_back_an_old_retained_state() -> None:
    topics = Topics("shop/1", "homeassistant")
    newest = alert_messages(_alert("9", part="snapshot"), topics, update_state=True)
    assert [(m.topic, m.retain) for m in newest] == [
        ("shop/1/kassa/events", False),
        ("shop/1/kassa/snapshot", True),
        ("shop/1/kassa/motion", True),
    ]
    older = alert_messages(_alert("8", part="clip"), topics, update_state=False)
    assert [m.topic for m in older] == ["shop/1/kassa/events"]
    assert topics.node == "shop_1"
    offline = alert_messages(
        _alert("7", kind="camera_offline", part="notice", snapshot_jpeg=None), topics, update_state=True
    )
    assert [m.topic for m in offline] == ["shop/1/kassa/events"]


async def test_channel_orders_retained_state_by_alert_time(tmp_path: Path) -> None:
    channel = _channel(tmp_path, free_port(), publish_wait_s=0.05)
    # Newest first, as the dispatcher sends after an outage: the older ones keep only their event JSON.
    for alert_id, at in (("3", T0 + timedelta(seconds=3)), ("1", T0), ("4", T0 + timedelta(seconds=4))):
        with pytest.raises(DeliveryError):
            await channel.send(_alert(alert_id, at=at))
    queued = [[m.topic.rsplit("/", 1)[1] for m in item.messages] for item in channel._state.queue]
    assert queued == [["events", "snapshot", "motion"], ["events"], ["events", "snapshot", "motion"]]


def test_broker_address_and_discovery_language(tmp_path: Path) -> None:
    address = BrokerAddress.parse("mqtts://home%40shop:p%3Ass@broker.example")
    assert (address.host, address.port, address.username, address.password, address.tls) == (
        "broker.example",
        8883,
        "home@shop",
        "p:ss",
        True,
    )
    assert str(address) == "broker.example:8883"
    with pytest.raises(ValueError, match="mqtt://"):
        BrokerAddress.parse("http://broker.example")
    english = discovery_messages(_cfg(tmp_path).cameras[:1], Topics("appliance", "ha"), "en")
    assert [m.topic for m in english] == [
        "ha/binary_sensor/appliance_kassa_motion/config",
        "ha/camera/appliance_kassa/config",
    ]
    assert json.loads(english[0].payload)["name"] == "Motion"


def test_created_from_settings_with_the_cameras_it_wants(tmp_path: Path) -> None:
    settings = ChannelSettings(
        id="ha", kind="mqtt", url="mqtt://127.0.0.1:1883", cameras=["sklad"], topic_prefix="shop/2", language="en"
    )
    channel = create(ChannelContext(settings, _cfg(tmp_path), None, tmp_path))  # type: ignore[arg-type]
    assert channel.topics == Topics("shop/2", "homeassistant")
    assert [m.topic for m in channel._discovery] == [
        "homeassistant/binary_sensor/shop_2_sklad_motion/config",
        "homeassistant/camera/shop_2_sklad/config",
    ]
    assert json.loads(channel._discovery[0].payload)["off_delay"] == 180
