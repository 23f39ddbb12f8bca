"""`appliance demo`: the whole appliance on built-in defaults, with simulated cameras.

No root, no Debian packages: SQLite in a temporary folder, the simulator's RTSP server inside
the process, the console and the portal on localhost, and a demo phone (demo_phone.py) whose
messages the console's demo inbox shows: the owner's alerts, delivered by the alerts outbox to a
webhook channel, and the guests' SMS codes, sent by the portal's SMS.ru client to a demo
provider. The gateway driver is "none": guests are identified and logged, nothing is let through.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.alerts.inbox import DemoInbox
from appliance.cameras.status import CameraState, CameraStatus
from appliance.config import Config, parse_config
from appliance.daemon import Extras, run_daemon
from appliance.demo_phone import CHANNEL_ID, DemoPhone, PhoneKeys
from appliance.demo_promos import seed_promotions
from appliance.logs import setup_logging
from appliance.portal.phones import shown
from appliance.portal.promo_images import PromoImages
from appliance.portal.promotions import PromotionStore
from appliance.portal.system import PROMO_IMAGES_DIRNAME
from appliance.simulator.server import SimCamera, SimulatorServer
from appliance.storage.db import engine_from_config, make_sessionmaker
from appliance.storage.migrate import upgrade
from appliance.storage.users import UnknownUser, UserStore

DEMO_USER = "demo"
DEMO_SCENE = "demo"
CAMERA_NAMES = ["Вход", "Касса", "Торговый зал", "Склад", "Витрина", "Подсобка", "Парковка", "Офис"]
SAMPLE_PHONE = "+79161234567"
"""Shown in the banner for a guest login; any Russian mobile number works."""
PHONE_PORT = 8082
"""Where the demo phone listens (or the next free port): next to the console's 8080 and the portal's 8081."""
PORT_SEARCH = 20
"""How many ports after the requested one the demo tries when it is taken."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, taken: set[int]) -> int:
    """The preferred port if free, else the next free one, else any free port."""
    for port in range(preferred, preferred + PORT_SEARCH):
        if port not in taken and _port_free(port):
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_config(
    data_dir: Path, cameras: int, sim_port: int, console_port: int, portal_port: int, phone: PhoneKeys
) -> Config:
    data: dict[str, Any] = {
        "appliance": {"name": "Демо-магазин", "data_dir": str(data_dir)},
        "console": {"port": console_port},
        "portal": {"port": portal_port, "sms": phone.sms_provider(), "gateway": {"driver": "none"}},
        "alerts": {"channels": [phone.alerts_channel()]},
        "logging": {"format": "text", "level": "info"},
        "cameras": [
            {
                "id": f"cam{i + 1}",
                "name": CAMERA_NAMES[i],
                "main_url": f"rtsp://127.0.0.1:{sim_port}/cam{i + 1}/main",
                "sub_url": f"rtsp://127.0.0.1:{sim_port}/cam{i + 1}/sub",
            }
            for i in range(cameras)
        ],
    }
    return parse_config(data, "demo defaults")


async def prepare_demo_data(cfg: Config, password: str) -> None:
    """The schema, the demo login and (once) the demo promotions."""
    engine = engine_from_config(cfg)
    try:
        await upgrade(engine)
        sessions = make_sessionmaker(engine)
        users = UserStore(sessions)
        try:
            await users.set_password(DEMO_USER, password)
        except UnknownUser:
            await users.add(DEMO_USER, password, role="admin")
        images = PromoImages(cfg.appliance.data_dir / PROMO_IMAGES_DIRNAME)
        await seed_promotions(PromotionStore(sessions), images)
    finally:
        await engine.dispose()


def camera_notice(status: CameraStatus) -> tuple[str, str] | None:
    """The inbox message for a camera's change of state, in the demo's language (Russian)."""
    if status.state is CameraState.ONLINE:
        return (
            f"Камера «{status.name}» в сети",
            f"Видео идёт: {status.width}×{status.height}, {status.fps:g} кадр/с.",
        )
    if status.state in (CameraState.RECONNECTING, CameraState.AUTH_FAILED, CameraState.NOT_FOUND):
        return f"Камера «{status.name}» не отвечает", status.last_error or ""
    return None


def _banner(cfg: Config, password: str, data_dir: Path, temporary: bool) -> str:
    console = f"http://{cfg.console.host}:{cfg.console.port}/"
    portal = f"http://{cfg.portal.host}:{cfg.portal.port}/"
    cams = "\n".join(f"    {c.name}: {c.main_url}" for c in cfg.cameras)
    keep = "deleted when the demo stops" if temporary else "kept"
    return (
        "\n"
        "  Store appliance demo is running.\n"
        f"  Staff console:   {console}\n"
        f"    login: {DEMO_USER}   password: {password}\n"
        f"  Demo phone (the owner's alerts and the guests' SMS arrive here): {console}inbox\n"
        f"    Alerts go through the outbox to the webhook channel {CHANNEL_ID!r}; deliveries: {console}alerts\n"
        f"  Guest Wi-Fi portal: {portal}\n"
        f"    Sign in with the phone number {shown(SAMPLE_PHONE)} (or any Russian mobile number):\n"
        "    the SMS with the code shows in the demo phone.\n"
        '    Gateway driver "none": guests are identified and logged, but the demo controls no network,\n'
        "    so nothing is let through (the welcome page says so).\n"
        f"  Simulated cameras (RTSP, playable with ffplay/VLC):\n{cams}\n"
        f"  Data: {data_dir} ({keep})\n"
        "  Press Ctrl-C to stop.\n"
    )


async def _demo(cfg: Config, keys: PhoneKeys, password: str, temporary: bool) -> int:
    sim_port = int(cfg.cameras[0].main_url.rsplit(":", 1)[1].split("/", 1)[0])
    simulator = SimulatorServer(
        [SimCamera(c.id, DEMO_SCENE, phase=i * 7.0) for i, c in enumerate(cfg.cameras)], port=sim_port
    )
    print("Preparing the simulated cameras (the first run encodes the scenes)...", file=sys.stderr)
    await simulator.start()
    await prepare_demo_data(cfg, password)
    inbox = DemoInbox()
    phone = DemoPhone(inbox, keys)

    def on_camera(status: CameraStatus) -> None:
        notice = camera_notice(status)
        if notice is not None:
            inbox.add(*notice, created_at=datetime.now(UTC))

    extras = Extras(
        inbox=inbox,
        on_ready=lambda: print(_banner(cfg, password, cfg.appliance.data_dir, temporary), flush=True),
        on_camera_change=on_camera,
    )
    try:
        await phone.start()
        return await run_daemon(cfg, extras)
    finally:
        await phone.stop()
        await simulator.stop()


def run_demo(data_dir: Path | None, cameras: int, console_port: int, portal_port: int) -> int:
    temp = tempfile.TemporaryDirectory(prefix="appliance-demo-") if data_dir is None else None
    root = Path(temp.name) if temp is not None else data_dir
    assert root is not None
    try:
        sim_port = pick_port(8554, set())
        console = pick_port(console_port, {sim_port})
        portal = pick_port(portal_port, {sim_port, console})
        keys = PhoneKeys(pick_port(PHONE_PORT, {sim_port, console, portal}))
        cfg = demo_config(root, cameras, sim_port, console, portal, keys)
        setup_logging(cfg.logging.level, cfg.logging.format)
        return asyncio.run(_demo(cfg, keys, secrets.token_urlsafe(9), temporary=temp is not None))
    finally:
        if temp is not None:
            temp.cleanup()
