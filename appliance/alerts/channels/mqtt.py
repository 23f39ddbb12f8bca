"""MQTT (aiomqtt): alerts for Home Assistant and any other MQTT consumer.

Topics (prefix `topic_prefix`, default "appliance"):
- `<prefix>/<camera>/events`: one JSON document per alert (QoS 1); `<prefix>/events` for alerts
  about no camera (disk nearly full, SMS budget);
- `<prefix>/<camera>/snapshot`: the newest snapshot JPEG, retained;
- `<prefix>/<camera>/motion`: ON when a motion event starts, OFF when its clip is ready, retained;
- `<prefix>/status`: online / offline, retained; "offline" is also the connection's last will.
On every connect, and whenever Home Assistant announces itself on `<discovery_prefix>/status`,
each camera is announced with MQTT discovery: a motion binary_sensor and a camera entity.

One connection per channel, kept by `run()` (a supervised component) that reconnects with
back-off. `send()` queues the alert's messages in memory and waits until the broker has
acknowledged them (QoS 1); when the broker is away it says so, the messages stay queued and go
out, in order, once it is back, and the dispatcher's retry of that alert then finds it done
instead of publishing it twice. The outbox row in the database stays the durable copy until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import aiomqtt

from appliance import __version__
from appliance.alerts.channel import Alert, DeliveryError
from appliance.supervisor import Backoff

if TYPE_CHECKING:
    from appliance.alerts.channels import ChannelContext
    from appliance.config import CameraConfig

log = logging.getLogger(__name__)

DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
QOS: Final = 1
RECONNECT_INITIAL_S: Final = 1.0
RECONNECT_MAX_S: Final = 30.0
PUBLISH_WAIT_S: Final = 10.0
"""How long `send` waits for the broker's acknowledgement while connected (the dispatcher gives up later)."""
DISCONNECTED_WAIT_S: Final = 1.0
"""How long `send` waits while the broker is away: a reconnect may be under way."""
MAX_QUEUED_ALERTS: Final = 1000
"""In memory at most; beyond it `send` refuses and the alerts wait in the outbox instead."""
REMEMBERED_ALERTS: Final = 5000
"""Published alert ids kept to answer the dispatcher's retries (far more than one outage's worth)."""
OFF_DELAY_MARGIN_S: Final = 60
"""Home Assistant turns the motion sensor off by itself this long after the longest possible event,
in case the clip alert that says OFF never comes (rules, a lost clip)."""
STOP_PUBLISH_S: Final = 2.0

ENTITY_NAMES: Final = {"ru": "Движение", "en": "Motion"}


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("not an mqtt://[user:password@]host[:port] address")
        return cls(
            host=parts.hostname,
            port=parts.port or DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme == "mqtts",
        )

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Topics:
    prefix: str
    discovery_prefix: str

    @property
    def node(self) -> str:
        """This appliance among others in Home Assistant: its topic prefix, as discovery ids allow."""
        return re.sub(r"[^a-zA-Z0-9_-]", "_", self.prefix)

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def of(self, camera_id: str | None, what: str) -> str:
        return f"{self.prefix}/{camera_id}/{what}" if camera_id else f"{self.prefix}/{what}"


def event_document(alert: Alert) -> dict[str, Any]:
    """The events topic's JSON: the composer's machine payload plus the texts and ids."""
    return {
        **alert.data,
        "alert_id": alert.alert_id,
        "kind": alert.kind,
        "part": alert.part,
        "camera_id": alert.camera_id,
        "camera_name": alert.camera_name,
        "event_id": alert.event_id,
        "title": alert.title,
        "body": alert.body,
        "link": alert.link,
        "occurred_utc": alert.occurred_utc.isoformat(),
        "has_snapshot": alert.snapshot_jpeg is not None,
    }


def alert_messages(alert: Alert, topics: Topics, *, update_state: bool) -> list[Publish]:
    """What one alert publishes. `update_state`: the alert is not older than the camera's retained
    state (after an outage the dispatcher sends the newest alert first; an older one must not put
    back an old snapshot or motion state)."""
    doc = json.dumps(event_document(alert), ensure_ascii=False, default=str).encode()
    out = [Publish(topics.of(alert.camera_id, "events"), doc)]
    if alert.camera_id is None or not update_state:
        return out
    if alert.snapshot_jpeg is not None:
        out.append(Publish(topics.of(alert.camera_id, "snapshot"), alert.snapshot_jpeg, retain=True))
    if alert.kind == "motion" and alert.part in ("snapshot", "clip"):
        state = b"ON" if alert.part == "snapshot" else b"OFF"
        out.append(Publish(topics.of(alert.camera_id, "motion"), state, retain=True))
    return out


def discovery_messages(cameras: Iterable[CameraConfig], topics: Topics, language: str) -> list[Publish]:
    """Home Assistant MQTT discovery: per camera a device with a motion binary_sensor and a camera entity."""
    availability = {
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    out = []
    for cam in cameras:
        object_id = f"{topics.node}_{cam.id}"
        device = {
            "identifiers": [object_id],
            "name": cam.name,
            "manufacturer": "Store appliance",
            "model": "IP camera",
            "sw_version": __version__,
        }
        motion = {
            "name": ENTITY_NAMES.get(language, ENTITY_NAMES["en"]),
            "unique_id": f"{object_id}_motion",
            "device_class": "motion",
            "state_topic": topics.of(cam.id, "motion"),
            "payload_on": "ON",
            "payload_off": "OFF",
            "off_delay": int(cam.events.max_event_s) + OFF_DELAY_MARGIN_S,
            "device": device,
            **availability,
        }
        camera = {
            "name": None,  # the device's name: the camera is the device
            "unique_id": f"{object_id}_camera",
            "topic": topics.of(cam.id, "snapshot"),
            "device": device,
            **availability,
        }
        for component, config_id, config in (
            ("binary_sensor", f"{object_id}_motion", motion),
            ("camera", object_id, camera),
        ):
            topic = f"{topics.discovery_prefix}/{component}/{config_id}/config"
            out.append(Publish(topic, json.dumps(config, ensure_ascii=False).encode(), retain=True))
    return out


@dataclass
class _Queued:
    alert_id: str
    messages: list[Publish]
    done: asyncio.Future[None]
    sent: int = 0
    """Messages of this alert the broker has acknowledged: after a reconnect the rest follow, not all."""


@dataclass
class _State:
    queue: deque[_Queued] = field(default_factory=deque)
    queued: dict[str, _Queued] = field(default_factory=dict)
    published: OrderedDict[str, None] = field(default_factory=OrderedDict)
    newest_state: dict[str, datetime] = field(default_factory=dict)
    """Per camera, the time of the alert whose snapshot and motion state are retained."""


class MqttChannel:
    max_attachment_bytes = 0
    """Clips are never published: a broker is no file store; the event JSON links to the event."""

    def __init__(
        self,
        channel_id: str,
        url: str,
        *,
        topic_prefix: str = "appliance",
        discovery_prefix: str = "homeassistant",
        cameras: Sequence[CameraConfig] = (),
        language: str = "ru",
        reconnect_initial_s: float = RECONNECT_INITIAL_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        publish_wait_s: float = PUBLISH_WAIT_S,
    ) -> None:
        self.id = channel_id
        self.broker = BrokerAddress.parse(url)
        self.topics = Topics(topic_prefix, discovery_prefix)
        self._discovery = discovery_messages(cameras, self.topics, language)
        self._backoff = Backoff(reconnect_initial_s, reconnect_max_s)
        self._publish_wait_s = publish_wait_s
        self._state = _State()
        self._wakeup = asyncio.Event()
        self._connected = False
        self._tried = False
        """A first connection attempt has ended: until then `send` waits as if connected (start-up, the CLI)."""
        self._last_error = "not connected yet"

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def queued(self) -> int:
        return len(self._state.queue)

    # ----------------------------------------------------------------------- sending ---

    def _enqueue(self, alert: Alert) -> _Queued:
        state = self._state
        newest = state.newest_state.get(alert.camera_id or "")
        update_state = newest is None or alert.occurred_utc >= newest
        if alert.camera_id is not None and update_state:
            state.newest_state[alert.camera_id] = alert.occurred_utc
        item = _Queued(
            alert.alert_id,
            alert_messages(alert, self.topics, update_state=update_state),
            asyncio.get_running_loop().create_future(),
        )
        state.queue.append(item)
        state.queued[alert.alert_id] = item
        self._wakeup.set()
        return item

    async def send(self, alert: Alert) -> None:
        state = self._state
        if alert.alert_id in state.published:
            return  # the dispatcher retries an alert that went out after its first try gave up waiting
        item = state.queued.get(alert.alert_id)
        if item is None:
            if len(state.queue) >= MAX_QUEUED_ALERTS:
                raise DeliveryError(f"MQTT broker {self.broker} unreachable and {MAX_QUEUED_ALERTS} alerts waiting")
            item = self._enqueue(alert)
        away = self._tried and not self._connected
        wait = min(self._publish_wait_s, DISCONNECTED_WAIT_S) if away else self._publish_wait_s
        try:
            await asyncio.wait_for(asyncio.shield(item.done), wait)
        except TimeoutError:
            raise DeliveryError(
                f"MQTT broker {self.broker} has not confirmed the alert ({self._last_error}); it is queued and goes "
                "out when the broker is back"
            ) from None

    async def close(self) -> None:
        """Nothing to release here: the connection belongs to `run()`, which outlives a dispatcher worker's
        restart; its cancellation at shutdown says "offline" and disconnects."""

    # -------------------------------------------------------------------- connection ---

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=self.broker.password,
            identifier=f"{self.topics.node}-{self.id}",
            will=aiomqtt.Will(self.topics.status, b"offline", qos=QOS, retain=True),
            tls_context=ssl.create_default_context() if self.broker.tls else None,
            keepalive=30,
        )

    async def run(self) -> None:
        """Keep the connection: announce, publish what is queued, reconnect with back-off when it drops."""
        while True:
            try:
                async with self._client() as client:
                    self._connected = self._tried = True
                    self._backoff.reset()
                    log.info("MQTT broker connected", extra={"channel": self.id, "broker": str(self.broker)})
                    await self._serve(client)
            # A lost connection ends `_serve`'s task group: the error arrives inside an ExceptionGroup.
            except* aiomqtt.MqttError as group:
                self._note_lost(group.exceptions[0])
            finally:
                self._connected = False
            await asyncio.sleep(self._backoff.next_delay())

    def _note_lost(self, exc: BaseException) -> None:
        self._tried = True
        self._last_error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "MQTT broker %s not reachable (%s); reconnecting",
            self.broker,
            exc,
            extra={"channel": self.id, "queued": len(self._state.queue)},
        )

    async def _serve(self, client: aiomqtt.Client) -> None:
        try:
            await client.subscribe(self.topics.ha_status, qos=QOS)
            await self._announce(client)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._drain(client))
                tasks.create_task(self._listen(client))
        except asyncio.CancelledError:
            # Shutting down: a clean disconnect sends no last will, so say "offline" ourselves.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(self.topics.status, b"offline", qos=QOS, retain=True, timeout=STOP_PUBLISH_S)
            raise

    async def _announce(self, client: aiomqtt.Client) -> None:
        for message in self._discovery:
            await client.publish(message.topic, message.payload, qos=QOS, retain=True)
        await client.publish(self.topics.status, b"online", qos=QOS, retain=True)

    async def _listen(self, client: aiomqtt.Client) -> None:
        """Home Assistant's birth message asks for discovery again; the iterator also ends (MqttError)
        when the connection drops while nothing is being published."""
        async for message in client.messages:
            if message.payload == b"online":
                await self._announce(client)

    async def _drain(self, client: aiomqtt.Client) -> None:
        state = self._state
        while True:
            if not state.queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = state.queue[0]
            while item.sent < len(item.messages):
                message = item.messages[item.sent]
                await client.publish(message.topic, message.payload, qos=QOS, retain=message.retain)
                item.sent += 1
            state.queue.popleft()
            del state.queued[item.alert_id]
            state.published[item.alert_id] = None
            while len(state.published) > REMEMBERED_ALERTS:
                state.published.popitem(last=False)
            if not item.done.done():
                item.done.set_result(None)


def create(ctx: ChannelContext) -> MqttChannel:
    settings = ctx.settings
    url = settings.url
    assert url is not None, "the settings refuse an mqtt channel without a url"
    cameras = [cam for cam in ctx.cfg.cameras if cam.enabled and settings.wants("motion", cam.id)]
    return MqttChannel(
        settings.id,
        url.get_secret_value(),
        topic_prefix=settings.topic_prefix,
        discovery_prefix=settings.discovery_prefix,
        cameras=cameras,
        language=settings.language or ctx.cfg.appliance.locale,
    )
