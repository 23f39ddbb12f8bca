"""SMS providers: the production clients against local stand-ins of SMS.ru and SMSC.ru, a generic
HTTP gateway, and a Gammu SMSD spool folder; the `[portal.sms]` settings they are built from."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from appliance.config import ConfigError, parse_config
from appliance.logs import SECRETS
from appliance.portal.sms.base import SmsError, SmsSender
from appliance.portal.sms.callcheck import CallChecker, CallStatus
from appliance.portal.sms.factory import build_sms_sender
from appliance.portal.sms.gammu import GammuSender
from appliance.portal.sms.settings import SmsSettings
from appliance.portal.sms.smsru import SmsRuSender
from tests.peers.smsc_standin import SmscStandIn
from tests.peers.smsru_standin import SmsRuStandIn

PHONE = "+79161234567"
CODE = "48213"
TEXT = f"Код для Wi-Fi: {CODE}. Never share it & don't reply"


def settings(section: dict[str, Any]) -> SmsSettings:
    return parse_config({"portal": {"sms": section}}).portal.sms


def sender_for(section: dict[str, Any], data_dir: Path = Path("/nonexistent")) -> SmsSender:
    return build_sms_sender(settings(section), data_dir)


async def failure(sender: SmsSender, phone: str = PHONE, text: str = TEXT) -> SmsError:
    """The SmsError of one send; also checks it gives away neither the code nor a key."""
    with pytest.raises(SmsError) as info:
        await sender.send(phone, text)
    await sender.close()
    message = str(info.value)
    assert CODE not in message
    assert not any(secret in message for secret in SECRETS.values)
    return info.value


def config_problems(section: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"portal": {"sms": section}})
    return info.value.problems


# -------------------------------------------------------------------------------- settings ---


def test_default_is_no_provider_and_it_says_what_to_configure() -> None:
    assert settings({}).provider == "none"


async def test_none_provider_refuses_with_the_fix() -> None:
    error = await failure(sender_for({}))
    assert error.permanent and "[portal.sms]" in error.args[0]


def test_smsru_needs_a_key() -> None:
    (problem,) = config_problems({"provider": "smsru"})
    assert problem.startswith("portal.sms: api_key:") and "api_id" in problem


def test_smsc_needs_login_and_password_or_a_key() -> None:
    (problem,) = config_problems({"provider": "smsc", "login": "shop"})
    assert "login and password" in problem
    assert settings({"provider": "smsc", "api_key": "k" * 20}).api_key is not None


def test_key_from_a_file_is_kept_out_of_repr_and_registered_for_the_logs(tmp_path: Path) -> None:
    key_file = tmp_path / "smsru.key"
    key_file.write_text("FILE-KEY-5b1c-4e0f\n")
    sms = settings({"provider": "smsru", "api_key_file": str(key_file)})
    assert sms.api_key is not None and sms.api_key.get_secret_value() == "FILE-KEY-5b1c-4e0f"
    assert "FILE-KEY" not in repr(sms)
    build_sms_sender(sms, tmp_path)
    assert "FILE-KEY-5b1c-4e0f" in SECRETS.values


def test_two_sources_of_one_key_are_refused() -> None:
    (problem,) = config_problems({"provider": "smsru", "api_key": "x" * 10, "api_key_env": "SMS_KEY"})
    assert "give only one of api_key, api_key_file, api_key_env" in problem


@pytest.mark.parametrize(
    ("http", "expected"),
    [
        ({"url": "https://gw.example/send?to={phone}&m={txt}"}, "unknown placeholder {txt}"),
        ({"url": "https://gw.example/send?to={phone}"}, "({text})"),
        ({"url": "ftp://gw.example/{phone}/{text}"}, "not an http:// or https:// address"),
        ({"url": "https://gw.example/send", "method": "GET", "body": "to={phone}&m={text}"}, "carries no body"),
        ({"url": "https://gw.example/{phone}/{text}", "success_pattern": "ok("}, "not a valid regular expression"),
        ({"url": "https://gw.example/{phone}/{text}", "headers": {"X-Key": "{api_key}"}}, "uses {api_key}"),
    ],
)
def test_bad_http_templates_are_refused_with_the_fix(http: dict[str, Any], expected: str) -> None:
    found = "\n".join(config_problems({"provider": "http", "http": http}))
    assert expected in found


# ------------------------------------------------------------------------------------ SMS.ru ---


async def test_smsru_sends_and_the_standin_captures_the_code(smsru_standin: SmsRuStandIn) -> None:
    sender = sender_for(smsru_standin.sms_config(sender="Magazin"))
    sent = await sender.send(PHONE, TEXT)
    await sender.close()
    assert smsru_standin.last_text(PHONE) == TEXT
    assert smsru_standin.last_code(PHONE) == CODE
    assert smsru_standin.sent_to(PHONE)[-1].sender == "Magazin"
    assert sent.provider_id == smsru_standin.sent_to(PHONE)[-1].id and sent.cost is not None and sent.cost > 0
    # POSTed: neither the key nor the code is ever in an address a proxy could log.
    assert not any(smsru_standin.api_id in q or CODE in q for q in smsru_standin.query_strings)


async def test_smsru_bad_key_is_permanent_and_says_where_the_key_goes(smsru_standin: SmsRuStandIn) -> None:
    error = await failure(sender_for(smsru_standin.sms_config(api_key="WRONG-KEY-0000")))
    assert error.permanent and "api_key" in str(error) and "code 200" in str(error)
    assert smsru_standin.messages == []


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda s: setattr(s, "balance", 1.0), "top up"),
        (lambda s: s.refused.add(PHONE), "cannot send to this number"),
    ],
)
async def test_smsru_refusals_only_the_owner_can_fix_are_permanent(
    smsru_standin: SmsRuStandIn, setup: Callable[[SmsRuStandIn], None], expected: str
) -> None:
    setup(smsru_standin)
    error = await failure(sender_for(smsru_standin.sms_config()))
    assert error.permanent and expected in str(error)


async def test_smsru_unapproved_sender_name_is_permanent(smsru_standin: SmsRuStandIn) -> None:
    error = await failure(sender_for(smsru_standin.sms_config(sender="NotApproved")))
    assert error.permanent and "sender" in str(error)


@pytest.mark.parametrize("mode", ["down", "busy", "garbage"])
async def test_smsru_outages_are_transient(smsru_standin: SmsRuStandIn, mode: Any) -> None:
    smsru_standin.mode = mode
    error = await failure(sender_for(smsru_standin.sms_config()))
    assert not error.permanent and "try again" in str(error)


async def test_smsru_timeout_is_transient(smsru_standin: SmsRuStandIn) -> None:
    smsru_standin.mode = "slow"
    error = await failure(sender_for(smsru_standin.sms_config(timeout_s=0.3)))
    assert not error.permanent and "did not answer within 0.3 s" in str(error)


async def test_unreachable_provider_is_transient(smsru_standin: SmsRuStandIn) -> None:
    config = smsru_standin.sms_config()
    await smsru_standin.stop()
    error = await failure(sender_for(config))
    assert not error.permanent and "cannot reach SMS.ru (127.0.0.1)" in str(error)


async def test_smsru_balance(smsru_standin: SmsRuStandIn) -> None:
    sender = sender_for(smsru_standin.sms_config())
    assert isinstance(sender, SmsRuSender)
    smsru_standin.balance = 12.5
    assert await sender.balance() == 12.5
    await sender.close()


async def test_smsru_call_check_waits_for_the_guests_call(smsru_standin: SmsRuStandIn) -> None:
    sender = sender_for(smsru_standin.sms_config())
    assert isinstance(sender, CallChecker)
    check = await sender.call_check(PHONE)
    assert check.call_number == "+78005008275"
    assert await sender.check_status(check.check_id) is CallStatus.PENDING
    smsru_standin.confirm_call("+79990000000")  # somebody else calling changes nothing
    assert await sender.check_status(check.check_id) is CallStatus.PENDING
    smsru_standin.confirm_call(PHONE)
    assert await sender.check_status(check.check_id) is CallStatus.CONFIRMED
    late = await sender.call_check(PHONE)
    smsru_standin.expire_checks()
    assert await sender.check_status(late.check_id) is CallStatus.EXPIRED
    assert await sender.check_status("no-such-check") is CallStatus.EXPIRED
    await sender.close()


async def test_only_smsru_offers_the_call_check(smsc_standin: SmscStandIn) -> None:
    assert not isinstance(sender_for(smsc_standin.sms_config()), CallChecker)


# ----------------------------------------------------------------------------------- SMSC.ru ---


async def test_smsc_sends_utf8_with_the_plus_sign(smsc_standin: SmscStandIn) -> None:
    sender = sender_for(smsc_standin.sms_config(sender="Magazin"))
    sent = await sender.send(PHONE, TEXT)
    await sender.close()
    assert smsc_standin.last_text(PHONE) == TEXT and smsc_standin.last_code(PHONE) == CODE
    assert sent.provider_id == smsc_standin.sent_to(PHONE)[-1].id
    assert smsc_standin.charsets == ["utf-8"]
    assert not any(smsc_standin.password in q or CODE in q for q in smsc_standin.query_strings)


async def test_smsc_api_key_instead_of_login() -> None:
    async with SmscStandIn.running(api_key="smsc-api-key-0123456789") as standin:
        sender = sender_for({"provider": "smsc", "api_key": "smsc-api-key-0123456789", "base_url": standin.url})
        await sender.send(PHONE, TEXT)
        await sender.close()
        assert standin.last_code(PHONE) == CODE


async def test_smsc_wrong_password_is_permanent(smsc_standin: SmscStandIn) -> None:
    error = await failure(sender_for(smsc_standin.sms_config(password="wrong-password")))
    assert error.permanent and "login / password / api_key" in str(error) and "code 2" in str(error)


async def test_smsc_refused_sender_and_empty_balance_are_permanent(smsc_standin: SmscStandIn) -> None:
    assert (await failure(sender_for(smsc_standin.sms_config(sender="Unknown")))).permanent
    smsc_standin.balance = 0
    error = await failure(sender_for(smsc_standin.sms_config()))
    assert error.permanent and "top up" in str(error)


@pytest.mark.parametrize("mode", ["down", "busy"])
async def test_smsc_outage_and_flood_guard_are_transient(smsc_standin: SmscStandIn, mode: Any) -> None:
    smsc_standin.mode = mode
    assert not (await failure(sender_for(smsc_standin.sms_config()))).permanent


async def test_smsc_timeout_is_transient(smsc_standin: SmscStandIn) -> None:
    smsc_standin.mode = "slow"
    error = await failure(sender_for(smsc_standin.sms_config(timeout_s=0.3)))
    assert not error.permanent and "SMSC.ru" in str(error)


# --------------------------------------------------------------------- generic HTTP template ---


class JsonGateway:
    """A small SMS gateway with a JSON API and a bearer token (the kind `[portal.sms.http]` is for)."""

    TOKEN = "gw-token-7f3a9c"

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200

    async def send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return web.json_response({"error": "unauthorised"}, status=401)
        if self.status != 200:
            return web.Response(status=self.status)
        self.received.append({"body": await request.json(), "type": request.content_type, "query": dict(request.query)})
        return web.json_response({"result": "queued", "message_id": "gw-41"})


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[JsonGateway, str]]:
    gw = JsonGateway()
    app = web.Application()
    app.router.add_post("/v1/messages", gw.send)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield gw, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def json_template(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "provider": "http",
        "api_key": JsonGateway.TOKEN,
        "sender": "Magazin",
        "http": {
            "url": f"{url}/v1/messages?channel=sms",
            "body": '{"to": "{phone}", "text": "{text}", "from": "{sender}"}',
            "body_type": "json",
            "headers": {"Authorization": "Bearer {api_key}"},
            "success_pattern": '"result": *"queued"',
            "id_pattern": '"message_id": *"([^"]+)"',
            **overrides,
        },
    }


async def test_http_template_json_body_is_escaped_and_reaches_the_gateway(gateway: tuple[JsonGateway, str]) -> None:
    gw, url = gateway
    tricky = 'Код 48213 "quoted" \\ & done\nnew line'
    sender = sender_for(json_template(url))
    sent = await sender.send(PHONE, tricky)
    await sender.close()
    (got,) = gw.received
    assert got["body"] == {"to": PHONE, "text": tricky, "from": "Magazin"}
    assert got["type"] == "application/json" and got["query"] == {"channel": "sms"}
    assert sent.provider_id == "gw-41"


async def test_http_template_wrong_token_is_permanent(gateway: tuple[JsonGateway, str]) -> None:
    _, url = gateway
    error = await failure(sender_for({**json_template(url), "api_key": "wrong-token-123"}))
    assert error.permanent and "HTTP 401" in str(error)


async def test_http_template_5xx_is_transient_and_unexpected_answer_fails(gateway: tuple[JsonGateway, str]) -> None:
    gw, url = gateway
    gw.status = 502
    assert not (await failure(sender_for(json_template(url)))).permanent
    gw.status = 200
    error = await failure(sender_for(json_template(url, success_pattern="delivered")))
    assert "success_pattern" in str(error)


async def test_http_template_form_request_against_the_smsru_api(smsru_standin: SmsRuStandIn) -> None:
    """An owner can also describe SMS.ru by hand; form fields are URL-encoded, Cyrillic included."""
    sender = sender_for(
        {
            "provider": "http",
            "api_key": smsru_standin.api_id,
            "http": {
                "url": f"{smsru_standin.url}/sms/send",
                "body": "api_id={api_key}&to={phone_digits}&msg={text}&json=1",
                "success_pattern": '"sms_id"',
                "id_pattern": '"sms_id": *"([^"]+)"',
            },
        }
    )
    sent = await sender.send(PHONE, TEXT)
    await sender.close()
    assert smsru_standin.last_text(PHONE) == TEXT
    assert sent.provider_id == smsru_standin.sent_to(PHONE)[-1].id


# ------------------------------------------------------------------------------------- Gammu ---

OUTBOX_NAME = re.compile(r"OUTA\d{8}_\d{6}_00_(\+\d+)_[0-9a-f]{12}\.txt")


async def test_gammu_writes_one_complete_outbox_file(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    sender = sender_for({"provider": "gammu", "gammu": {"outbox_dir": str(outbox)}})
    sent = await sender.send(PHONE, TEXT)
    second = await sender.send(PHONE, TEXT)
    files = sorted(p.name for p in outbox.iterdir())
    assert files == sorted([sent.provider_id, second.provider_id])  # no leftover temporary files
    match = OUTBOX_NAME.fullmatch(files[0])
    assert match and match.group(1) == PHONE
    data = (outbox / files[0]).read_bytes()
    assert data[:2] == b"\xfe\xff" and data[2:].decode("utf-16-be") == TEXT


async def test_gammu_relative_outbox_is_inside_data_dir_and_flash_is_an_option(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    sender = sender_for({"provider": "gammu", "gammu": {"outbox_dir": "spool", "flash": True}}, tmp_path)
    assert isinstance(sender, GammuSender) and sender.outbox == tmp_path / "spool"
    sent = await sender.send(PHONE, TEXT)
    assert sent.provider_id is not None and sent.provider_id.endswith(".txtf")


def test_gammu_missing_outbox_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(SmsError) as info:
        sender_for({"provider": "gammu", "gammu": {"outbox_dir": str(tmp_path / "missing")}})
    assert info.value.permanent and "OutboxPath" in str(info.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(SmsError):
        sender_for({"provider": "gammu", "gammu": {"outbox_dir": str(tmp_path / "file")}})


async def test_gammu_refuses_a_number_that_would_escape_the_folder(tmp_path: Path) -> None:
    sender = sender_for({"provider": "gammu", "gammu": {"outbox_dir": str(tmp_path)}})
    error = await failure(sender, phone="+7/../../etc/x")
    assert error.permanent and list(tmp_path.iterdir()) == []


async def test_gammu_outbox_removed_while_running_is_reported(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    sender = sender_for({"provider": "gammu", "gammu": {"outbox_dir": str(outbox)}})
    outbox.rmdir()
    error = await failure(sender)
    assert "cannot write to the Gammu outbox" in str(error)


# ------------------------------------------------------------------- stand-in control over HTTP ---


async def test_standin_control_requests_for_tests_in_another_process(smsru_standin: SmsRuStandIn) -> None:
    sender = sender_for(smsru_standin.sms_config())
    await sender.send(PHONE, TEXT)
    await sender.close()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{smsru_standin.url}/_standin/messages", params={"to": PHONE}) as resp:
            messages = (await resp.json())["messages"]
        async with http.post(f"{smsru_standin.url}/_standin/mode", params={"mode": "down"}) as resp:
            assert resp.status == 200
    assert [m["text"] for m in messages] == [TEXT]
    assert smsru_standin.mode == "down"


# ------------------------------------------------------------------------ the example file ---

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "appliance.example.toml"


@pytest.mark.parametrize(("table", "extra"), [("http", {"api_key": "k" * 12}), ("gammu", {})])
def test_commented_examples_in_the_example_file_are_valid(table: str, extra: dict[str, Any]) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index(f"# [portal.sms.{table}]")
    end = text.index("\n\n", start)
    # Uncomment the settings (single "# "), leave the explanations ("# # ") out.
    lines = [line[2:] for line in text[start:end].splitlines() if line.startswith("# ") and not line.startswith("# # ")]
    section = tomllib.loads("\n".join(lines))["portal"]["sms"]
    sms = settings({"provider": table, **extra, **section})
    assert getattr(sms, table).model_dump(mode="json") == section[table]
