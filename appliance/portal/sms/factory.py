"""The SMS sender `[portal.sms]` describes, with its secrets registered with the log filter."""

from __future__ import annotations

from pathlib import Path

from appliance.logs import SECRETS
from appliance.portal.sms.base import Sent, SmsError, SmsSender
from appliance.portal.sms.gammu import GammuSender
from appliance.portal.sms.http_client import ProviderClient
from appliance.portal.sms.http_template import HttpTemplateSender
from appliance.portal.sms.settings import SmsSettings
from appliance.portal.sms.smsc import SmscSender
from appliance.portal.sms.smsru import SmsRuSender


class NoSmsSender:
    """`provider = "none"`: every send fails with what the owner has to do."""

    name = "none"

    async def send(self, phone_e164: str, text: str) -> Sent:
        raise SmsError(
            "no SMS provider is set up; choose one in [portal.sms] provider (smsru, smsc, http or gammu) "
            "or let guests in with vouchers",
            permanent=True,
        )

    async def close(self) -> None:
        return None


def _client(settings: SmsSettings, label: str) -> ProviderClient:
    return ProviderClient(label, connect_timeout_s=settings.connect_timeout_s, timeout_s=settings.timeout_s)


def build_sms_sender(settings: SmsSettings, data_dir: Path) -> SmsSender:
    """The configured sender. Raises SmsError (permanent) when the provider cannot work at all
    (a Gammu outbox that is missing or not writable), so the daemon reports it at start."""
    SECRETS.add(*settings.secret_values())
    api_key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    password = settings.password.get_secret_value() if settings.password is not None else None
    if settings.provider == "smsru":
        assert api_key is not None  # the settings refuse smsru without a key
        return SmsRuSender(api_key, _client(settings, "SMS.ru"), base_url=settings.api_base, sender=settings.sender)
    if settings.provider == "smsc":
        return SmscSender(
            _client(settings, "SMSC.ru"),
            base_url=settings.api_base,
            api_key=api_key,
            login=settings.login,
            password=password,
            sender=settings.sender,
        )
    if settings.provider == "http":
        return HttpTemplateSender(
            settings.http, _client(settings, "the SMS gateway"), api_key=api_key, sender=settings.sender
        )
    if settings.provider == "gammu":
        return GammuSender(settings.gammu, data_dir / settings.gammu.outbox_dir)
    return NoSmsSender()
