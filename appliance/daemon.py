"""The appliance process: builds the components from the config and keeps them running.

Start-up order matters: the database schema is migrated before any component starts (a
component must never see an old schema), and READY=1 goes to systemd only when every listener
is bound, so `systemctl start` returns when the console actually answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from appliance import __version__
from appliance.alerts.inbox import DemoInbox
from appliance.alerts.system import build_alerts
from appliance.bus import EventBus
from appliance.cameras.status import CameraStatus, StatusBoard
from appliance.cameras.system import build_cameras
from appliance.config import Config
from appliance.console.app import create_console_app
from appliance.evidence.keys import KeyFileError
from appliance.features import Built
from appliance.logs import SECRETS, setup_logging
from appliance.portal.app import create_portal_app
from appliance.portal.gateways.base import GatewayError
from appliance.portal.sms.base import SmsError
from appliance.portal.system import PortalSystem, build_portal
from appliance.redact import mask_url
from appliance.sdnotify import Notifier, watchdog_loop
from appliance.storage.db import engine_from_config, make_sessionmaker
from appliance.storage.migrate import upgrade
from appliance.storage.users import UserStore
from appliance.supervisor import StopStage, Supervisor

log = logging.getLogger(__name__)

Component = Callable[[], Awaitable[None]]


@dataclass
class Extras:
    """What `appliance demo` adds to a normal daemon: the simulated cameras and the inbox page."""

    components: list[tuple[str, Component]] = field(default_factory=list)
    inbox: DemoInbox | None = None
    on_ready: Callable[[], None] | None = None
    on_camera_change: Callable[[CameraStatus], None] | None = None
    bus: EventBus = field(default_factory=EventBus)
    """The bus the components share; a test subscribes to it to see what they publish."""


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""


LISTEN_WAIT_S = 10.0
LISTEN_POLL_S = 0.05


async def serve_app(app: web.Application, host: str, port: int, what: str, bound: asyncio.Event) -> None:
    """Serve an aiohttp application until cancelled; `bound` is set once the port is open."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"the {what} cannot listen on {host}:{port} ({exc.strerror}); "
                f"another program uses the port or the address is wrong: change {what}.port / {what}.host"
            ) from None
        bound.set()
        log.info("listening", extra={"component": what, "url": f"http://{host}:{port}/"})
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _register_secrets(cfg: Config) -> None:
    for cam in cfg.cameras:
        if cam.password is not None:
            SECRETS.add(cam.password.get_secret_value())
    if cfg.database.password is not None:
        SECRETS.add(cfg.database.password.get_secret_value())


def _listeners(
    cfg: Config,
    users: UserStore,
    board: StatusBoard,
    supervisor: Supervisor,
    extras: Extras,
    parts: list[Built],
    portal_system: PortalSystem,
) -> dict[str, tuple[Component, asyncio.Event]]:
    out: dict[str, tuple[Component, asyncio.Event]] = {}
    if cfg.console.enabled:
        features = [f for part in parts for f in part.console]
        console = create_console_app(cfg, users, board, supervisor.status, inbox=extras.inbox, features=features)
        bound = asyncio.Event()
        out["console"] = (
            partial(serve_app, console, cfg.console.host, cfg.console.port, "console", bound),
            bound,
        )
    if cfg.portal.enabled:
        portal = create_portal_app(cfg, portal_system)
        bound = asyncio.Event()
        out["portal"] = (partial(serve_app, portal, cfg.portal.host, cfg.portal.port, "portal", bound), bound)
    return out


async def _wait_bound(listeners: dict[str, tuple[Component, asyncio.Event]], supervisor: Supervisor) -> str | None:
    """None when every listener is open, else why not.

    A listener that failed its first bind is a start-up failure, not something to retry
    quietly: the port is taken or the address is wrong, and systemd should show that at once.
    """
    deadline = asyncio.get_running_loop().time() + LISTEN_WAIT_S
    while not all(bound.is_set() for _, bound in listeners.values()):
        errors = [c.last_error for c in supervisor.status() if c.name in listeners and c.last_error]
        if errors:
            return "; ".join(errors)
        if asyncio.get_running_loop().time() > deadline:
            return "the web listeners did not start in time"
        await asyncio.sleep(LISTEN_POLL_S)
    return None


async def run_daemon(cfg: Config, extras: Extras | None = None) -> int:
    extras = extras or Extras()
    notifier = Notifier()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    engine = engine_from_config(cfg)
    try:
        cfg.appliance.data_dir.mkdir(parents=True, exist_ok=True)
        await upgrade(engine)
    except (OSError, SQLAlchemyError) as exc:
        await engine.dispose()
        log.error(
            "cannot open the database; check that it is reachable and the data directory is writable",
            extra={"database": mask_url(cfg.database_url), "error": str(exc).splitlines()[0]},
        )
        return 1

    board = StatusBoard()
    if extras.on_camera_change is not None:
        board.on_state_change(extras.on_camera_change)
    supervisor = Supervisor.from_config(cfg.daemon)
    for name, component in extras.components:
        supervisor.add(name, component)
    for cam in cfg.cameras:
        board.register(cam.id, cam.name, enabled=cam.enabled)
    sessions = make_sessionmaker(engine)
    bus = extras.bus
    try:
        cameras = await build_cameras(cfg, sessions, board, bus)
        alerts = await build_alerts(cfg, sessions, bus)
        portal_system = await build_portal(cfg, sessions, bus)
    except (KeyFileError, OSError, SQLAlchemyError, GatewayError, SmsError) as exc:
        log.error("cannot start", extra={"error": str(exc)})
        await engine.dispose()
        return 1
    except ValueError as exc:
        # A setting only its component can judge (an apprise URL it does not know, for one).
        log.error("cannot start: fix the configuration", extra={"error": str(exc)})
        await engine.dispose()
        return 1
    for name, component, stage in [*cameras.components, *alerts.components, *portal_system.components]:
        supervisor.add(name, component, stage=stage)
    users = UserStore(sessions)
    listeners = _listeners(cfg, users, board, supervisor, extras, [alerts, portal_system], portal_system)
    for name, (component, _) in listeners.items():
        supervisor.add(name, component, stage=StopStage.LISTENERS)

    supervisor.start()
    problem = await _wait_bound(listeners, supervisor)
    if problem is not None:
        log.error("cannot start", extra={"error": problem})
        await supervisor.stop(cfg.daemon.shutdown_timeout_s)
        await engine.dispose()
        return 1
    notifier.ready()
    log.info("appliance started", extra={"version": __version__, "cameras": len(cfg.cameras)})
    if extras.on_ready is not None:
        extras.on_ready()
    watchdog = asyncio.create_task(
        watchdog_loop(notifier, lambda: f"{board.summary()}; {supervisor.summary()}"), name="watchdog"
    )
    try:
        await stopping.wait()
    finally:
        log.info("stopping")
        notifier.stopping()
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        stuck = await supervisor.stop(cfg.daemon.shutdown_timeout_s)
        if stuck:
            # asyncio.run() would wait for these without a limit; systemd would SIGKILL us.
            log.error("components did not stop in time; exiting anyway", extra={"components": stuck})
            logging.shutdown()
            os._exit(1)
        await cameras.finish()
        await engine.dispose()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped")
    return 0


def run(cfg: Config, extras: Extras | None = None) -> int:
    setup_logging(cfg.logging.level, cfg.logging.format)
    _register_secrets(cfg)
    return asyncio.run(run_daemon(cfg, extras))
