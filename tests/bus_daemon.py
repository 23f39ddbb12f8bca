"""Runs the appliance daemon and prints what its cameras publish on the event bus (a test peer).

Usage: python -m tests.bus_daemon CONFIG

The daemon is `appliance run` itself (`appliance.daemon.run`); one more supervised component
prints each camera message (appliance/cameras/messages.py) as a JSON line on stdout, with the time
the bus delivered it, so that an end-to-end test sees what the alert dispatcher would. Datetimes
are ISO 8601, bytes (JPEG snapshots) base64. `decode` turns a line back into the message.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from appliance.bus import EventBus, Subscription
from appliance.cameras import messages as camera_messages
from appliance.config import load_config
from appliance.daemon import Extras, run


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def encode(message: object, heard: datetime) -> str | None:
    """The JSON line for a camera message; None for other messages."""
    if type(message).__module__ != camera_messages.__name__ or not dataclasses.is_dataclass(message):
        return None
    fields = {f.name: _plain(getattr(message, f.name)) for f in dataclasses.fields(message)}
    return json.dumps({"type": type(message).__name__, "heard": heard.isoformat(), **fields})


def decode(line: str) -> tuple[datetime, object]:
    """(when the bus delivered it, the message) from a line `encode` wrote."""
    doc = json.loads(line)
    cls = getattr(camera_messages, doc.pop("type"))
    heard = datetime.fromisoformat(doc.pop("heard"))
    values = {}
    for f in dataclasses.fields(cls):
        value = doc[f.name]
        if value is not None and "datetime" in str(f.type):
            value = datetime.fromisoformat(value)
        elif value is not None and "bytes" in str(f.type):
            value = base64.b64decode(value)
        values[f.name] = value
    return heard, cls(**values)


async def print_messages(bus: EventBus) -> None:
    messages: Subscription[object] = bus.subscribe()
    async for message in messages:
        line = encode(message, datetime.now(UTC))
        if line is not None:
            print(line, flush=True)


def main(config: Path) -> int:
    bus = EventBus()
    return run(load_config(config), Extras(components=[("bus-printer", partial(print_messages, bus))], bus=bus))


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
