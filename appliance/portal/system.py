"""Assembling the guest Wi-Fi side of the appliance from the config: the gateway driver, the SMS
provider, the identity provider, the identification service over its stores, the promotions and
vouchers, the background work (session timeouts, the log's purge) and the console's guest section."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.bus import EventBus
from appliance.config import Config
from appliance.features import Built
from appliance.portal.codes import CodeHasher, load_or_create_code_key
from appliance.portal.consent import ConsentTexts, consent_texts
from appliance.portal.gateways.base import Gateway
from appliance.portal.gateways.factory import build_gateway
from appliance.portal.gateways.none import NoGateway
from appliance.portal.gateways.opennds import OpenNdsGateway
from appliance.portal.guests_console import feature as guests_console_feature
from appliance.portal.hosts import PortalAddress
from appliance.portal.identify import IdentificationService
from appliance.portal.identity_provider import SignedRedirect
from appliance.portal.promo_images import PromoImages
from appliance.portal.promotions import PromotionStore
from appliance.portal.promotions_console import promotions_console_feature
from appliance.portal.settings import LoginSettings
from appliance.portal.sms.base import SmsSender
from appliance.portal.sms.factory import build_sms_sender
from appliance.portal.upkeep import Purge, SessionSweeper
from appliance.portal.vouchers import VoucherStore
from appliance.portal.vouchers_console import vouchers_console_feature
from appliance.storage.guest_codes import CodeStore, SmsBudget
from appliance.storage.guests import GuestStore
from appliance.supervisor import StopStage

PROMO_IMAGES_DIRNAME = "promos"


@dataclass(kw_only=True)
class PortalSystem(Built):
    settings: LoginSettings
    address: PortalAddress
    tz: ZoneInfo
    gateway: Gateway
    identification: IdentificationService
    guests: GuestStore
    consent: ConsentTexts
    promotions: PromotionStore
    promo_images: PromoImages
    vouchers: VoucherStore
    sms: SmsSender | None
    """None when no provider is configured: codes are then not offered."""


async def _gateway_lifetime(gateway: Gateway, sms: SmsSender | None) -> None:
    """The gateway's rules exist while the appliance runs, and are removed when it stops."""
    await gateway.start()
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            if sms is not None:
                await sms.close()
        await gateway.stop()


async def build_portal(cfg: Config, sessions: async_sessionmaker[AsyncSession], bus: EventBus) -> PortalSystem:
    login = cfg.portal.login
    tz = ZoneInfo(cfg.appliance.timezone)
    gateway = build_gateway(cfg.portal.gateway, cfg, sessions)
    sms = build_sms_sender(cfg.portal.sms, cfg.appliance.data_dir) if cfg.portal.sms.provider != "none" else None
    key = await asyncio.to_thread(load_or_create_code_key, cfg.appliance.data_dir)
    consent = consent_texts(
        login.operator_name, login.operator_address, cfg.appliance.name, login.log_retention_days, login.consent_version
    )
    guests, codes, budget = GuestStore(sessions), CodeStore(sessions), SmsBudget(sessions)
    vouchers = VoucherStore(sessions)
    identification = IdentificationService(
        login,
        codes=codes,
        budget=budget,
        guests=guests,
        gateway=gateway,
        hasher=CodeHasher(key),
        bus=bus,
        tz=tz,
        consent_version=consent.recorded_version,
        sms=sms,
        vouchers=vouchers,
        external=SignedRedirect(login.external) if "external" in login.methods else None,
    )
    await identification.restore_limits()
    # Only nftables and RADIUS know more than the session's timeout (idle ends, traffic); openNDS's
    # answers are the portal's own grants, lost at a restart, which would end open sessions early.
    sweeper = SessionSweeper(identification, ask_gateway=not isinstance(gateway, NoGateway | OpenNdsGateway))
    purge = Purge(
        guests,
        codes,
        budget,
        login.log_retention_days,
        limits_lookback=identification.limits_lookback,
        vouchers=vouchers,
    )
    system = PortalSystem(
        settings=login,
        address=PortalAddress(cfg.portal.host, login.public_url),
        tz=tz,
        gateway=gateway,
        identification=identification,
        guests=guests,
        consent=consent,
        promotions=PromotionStore(sessions),
        promo_images=PromoImages(cfg.appliance.data_dir / PROMO_IMAGES_DIRNAME),
        vouchers=vouchers,
        sms=sms,
    )
    system.components += [
        ("guest-gateway", lambda: _gateway_lifetime(gateway, sms), StopStage.LISTENERS),
        ("guest-sessions", sweeper.run, StopStage.SOURCES),
        ("guest-log-purge", purge.run, StopStage.SOURCES),
    ]
    # The console's sections share the portal's stores (a promotion changed there shows here at once).
    system.console += [
        guests_console_feature(identification, login, tz),
        promotions_console_feature(system.promotions, system.promo_images, tz),
        vouchers_console_feature(vouchers, wifi_name=login.wifi_name or None),
    ]
    return system
