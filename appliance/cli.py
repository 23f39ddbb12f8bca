"""The `appliance` command line.

Exit codes: 0 success, 2 bad usage or configuration, 1 a failure while running.
Handlers are imported when their command runs, so that `--help` and `check-config` stay fast
and do not load PyAV or OpenCV.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance import __version__
from appliance.config import Config, ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_CONFIG = Path("/etc/appliance/appliance.toml")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"configuration file (default {DEFAULT_CONFIG})",
    )


def _load(path: Path) -> Config:
    cfg = load_config(path)
    return cfg


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.path)
    cams = len(cfg.cameras)
    print(f"{args.path}: OK ({cams} camera{'s' if cams != 1 else ''}, database {cfg.database_url.split(':')[0]})")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from appliance.daemon import run

    return run(_load(args.config))


def cmd_demo(args: argparse.Namespace) -> int:
    from appliance.demo import run_demo

    return run_demo(
        data_dir=args.data_dir,
        cameras=args.cameras,
        console_port=args.console_port,
        portal_port=args.portal_port,
    )


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from appliance.storage.commands import db_upgrade

    return db_upgrade(_load(args.config))


def cmd_user(args: argparse.Namespace) -> int:
    from appliance.storage import commands

    cfg = _load(args.config)
    if args.user_command == "add":
        return commands.user_add(cfg, args.username, role=args.role, password_stdin=args.password_stdin)
    if args.user_command == "passwd":
        return commands.user_passwd(cfg, args.username, password_stdin=args.password_stdin)
    return commands.user_list(cfg)


def cmd_footage_verify(args: argparse.Namespace) -> int:
    from appliance.evidence.commands import footage_verify

    return footage_verify(_load(args.config), args.camera, args.start, args.end)


def cmd_footage_holds(args: argparse.Namespace) -> int:
    from appliance.storage import hold_commands

    cfg = _load(args.config)
    if args.footage_command == "hold":
        return hold_commands.footage_hold(cfg, args.camera, args.start, args.end, args.reason)
    if args.footage_command == "release":
        return hold_commands.footage_release(cfg, args.hold_id)
    return hold_commands.footage_holds(cfg, active_only=args.active)


def cmd_alerts(args: argparse.Namespace) -> int:
    from appliance.alerts import commands

    cfg = _load(args.config)
    if args.alerts_command == "test":
        return commands.alerts_test(cfg, args.channel)
    return commands.alerts_status(cfg)


def cmd_simulate(args: argparse.Namespace) -> int:
    from appliance.simulator.cli import run_simulator

    result: int = run_simulator(args)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Store appliance: IP-camera recorder with motion alerts, and the guest Wi-Fi captive portal.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the appliance daemon (what systemd starts)")
    _config_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run everything on built-in defaults with simulated cameras")
    p.add_argument("--data-dir", type=Path, default=None, help="keep demo data here (default: a temporary folder)")
    p.add_argument("--cameras", type=int, default=2, choices=range(1, 9), metavar="N", help="simulated cameras (1-8)")
    p.add_argument("--console-port", type=int, default=8080, help="staff console port (default 8080)")
    p.add_argument("--portal-port", type=int, default=8081, help="guest portal port (default 8081)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("check-config", help="validate a configuration file and exit")
    p.add_argument("path", type=Path, help="the TOML file to check")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("db", help="database maintenance")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="apply database migrations (also done at start)")
    _config_arg(up)
    up.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("user", help="staff console accounts")
    user_sub = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = user_sub.add_parser("add", help="create a staff account (asks for the password)")
    add.add_argument("username")
    add.add_argument("--role", choices=["admin", "viewer"], default="viewer", help="admin manages settings and users")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    passwd = user_sub.add_parser("passwd", help="change a staff account's password")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    lst = user_sub.add_parser("list", help="list staff accounts")
    for sp in (add, passwd, lst):
        _config_arg(sp)
        sp.set_defaults(func=cmd_user)

    p = sub.add_parser("footage", help="recorded footage")
    footage_sub = p.add_subparsers(dest="footage_command", required=True, metavar="ACTION")
    verify = footage_sub.add_parser(
        "verify", help="check recorded footage against its signed evidence chain; exit 1 if it was tampered with"
    )
    verify.add_argument("--camera", metavar="ID", help="only this camera (default: all)")
    verify.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="footage recorded from TIME, e.g. '2026-11-27 14:00' (store's time zone) or ISO with offset",
    )
    verify.add_argument("--to", dest="end", metavar="TIME", help="footage recorded up to TIME (a bare date: its end)")
    _config_arg(verify)
    verify.set_defaults(func=cmd_footage_verify)
    hold = footage_sub.add_parser(
        "hold", help="keep footage from retention for an investigation (a legal hold) until it is released"
    )
    hold.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="TIME",
        help="footage recorded from TIME, e.g. '2026-11-27 14:00' (store's time zone) or ISO with offset",
    )
    hold.add_argument("--to", dest="end", metavar="TIME", help="up to TIME (default: now; a bare date: its end)")
    hold.add_argument("--camera", metavar="ID", help="only this camera (default: every camera)")
    hold.add_argument("--reason", required=True, metavar="TEXT", help="why: a case or request number, who asked for it")
    holds = footage_sub.add_parser("holds", help="list legal holds, active and released")
    holds.add_argument("--active", action="store_true", help="only the holds not released")
    release = footage_sub.add_parser("release", help="release a legal hold: its footage ages out as usual again")
    release.add_argument("hold_id", type=int, metavar="ID", help="the hold's number (see `appliance footage holds`)")
    for sp in (hold, holds, release):
        _config_arg(sp)
        sp.set_defaults(func=cmd_footage_holds)

    p = sub.add_parser("alerts", help="alerts to the owner's phone")
    alerts_sub = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    test = alerts_sub.add_parser("test", help="send a test alert through a channel and say whether it arrived")
    test.add_argument("--channel", required=True, metavar="ID", help="the id of an [[alerts.channels]] entry")
    status = alerts_sub.add_parser("status", help="delivery per channel, pauses, and alerts that were refused")
    for sp in (test, status):
        _config_arg(sp)
        sp.set_defaults(func=cmd_alerts)

    p = sub.add_parser("simulate", help="serve simulated RTSP cameras with scripted store scenes")
    from appliance.simulator.cli import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
