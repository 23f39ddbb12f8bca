"""`[portal.gateway]`: which device lets an identified guest through, and its settings."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, IPvAnyNetwork, SecretStr, field_validator, model_validator

from appliance.settings_base import Slug, StrictModel

_INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
"""Linux names are at most 15 characters; the name is written into nftables rules, so no quotes."""

PRIVATE_DESTINATIONS: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)
"""RFC 1918, carrier-grade NAT (RFC 6598), link-local, IPv6 unique-local and link-local: where a shop's
cameras, recorder, till and staff computers live, never the internet."""


def _destination(value: Any) -> Any:
    """A network as nftables takes it, with an error that says how to write it."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    with contextlib.suppress(ValueError):
        return ipaddress.ip_network(text)
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f'{value!r} is not an IPv4 or IPv6 address or network; write e.g. "192.168.1.0/24", "192.168.1.20" '
            'or "fd00::/8"'
        ) from None
    raise ValueError(
        f'{value!r} has host bits set; write "{loose}" for the whole network or "{text.split("/")[0]}" for that '
        "one address"
    )


Destination = Annotated[IPvAnyNetwork, BeforeValidator(_destination)]


class NftablesSettings(StrictModel):
    interface: str | None = Field(
        None,
        description=(
            'The guest network\'s interface on this box (the Wi-Fi bridge or VLAN), e.g. "br-guest" or "wlan0". '
            'Required with driver = "nftables".'
        ),
    )
    portal_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port guests' web requests (TCP 80) are sent to before login. Default: portal.port.",
    )
    table: str = Field(
        "appliance_portal",
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="Name of the nftables table (family inet) installed at start, replaced whole, and removed on stop.",
    )
    dns_servers: tuple[IPvAnyNetwork, ...] = Field(
        (),
        max_length=32,
        description=(
            'DNS servers guests may ask before login (UDP and TCP port 53), e.g. ["10.0.0.1"]. Empty: any server. '
            "DNS on this box itself is always reachable."
        ),
    )
    preauth_destinations: tuple[IPvAnyNetwork, ...] = Field(
        (),
        max_length=64,
        description=(
            "Addresses or networks guests may reach on any port before login, e.g. another host serving the "
            "portal's images. This box's portal port is always reachable."
        ),
    )
    blocked_destinations: tuple[Destination, ...] = Field(
        PRIVATE_DESTINATIONS,
        max_length=256,
        description=(
            "Networks a signed-in guest must not reach through this box: the shop's own LAN, where the cameras "
            "(RTSP, their web pages), the recorder and the staff computers have private addresses. Default: every "
            "private and link-local range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, "
            "169.254.0.0/16, fc00::/7, fe80::/10). Traffic there is refused at once (TCP reset, ICMP "
            "administratively prohibited), so a guest's app fails fast instead of hanging. Guest-to-guest traffic "
            "routed back out of the guest interface is refused as well, whatever this list holds. "
            "Empty: signed-in guests reach every address (only for a box that routes no LAN but the guests')."
        ),
    )
    allowed_destinations: tuple[Destination, ...] = Field(
        (),
        max_length=64,
        description=(
            'Exceptions to blocked_destinations a signed-in guest may reach on any port, e.g. ["192.168.1.30"] '
            "for a printer meant for guests or a resolver on the LAN. dns_servers (port 53) and "
            "preauth_destinations stay reachable after sign-in without being listed here."
        ),
    )
    down_kbit_s: int | None = Field(
        None, ge=64, le=10_000_000, description="Per-guest download limit (kbit/s) when a login sets none. Empty: none."
    )
    up_kbit_s: int | None = Field(
        None, ge=64, le=10_000_000, description="Per-guest upload limit (kbit/s) when a login sets none. Empty: none."
    )
    quota_mb: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description=(
            "Traffic per login (download + upload, 1 MB = 1,000,000 bytes) when a login sets none; past it the "
            "guest's traffic stops until a new login. Empty: no quota."
        ),
    )

    @field_validator("interface")
    @classmethod
    def _interface_name(cls, value: str | None) -> str | None:
        if value is not None and not _INTERFACE_NAME.match(value):
            raise ValueError(
                f"{value!r} is not an interface name: at most 15 letters, digits, '.', '-' or '_' "
                '(see `ip link`), e.g. "br-guest"'
            )
        return value

    @field_validator("blocked_destinations")
    @classmethod
    def _not_everything(cls, value: tuple[IPvAnyNetwork, ...]) -> tuple[IPvAnyNetwork, ...]:
        for network in value:
            if network.prefixlen == 0:
                raise ValueError(
                    f"{network} is every address: signed-in guests would reach nothing; list only the LAN's networks "
                    '(e.g. "192.168.1.0/24")'
                )
        return value


RadiusDialect = Literal["standard", "wispr", "chillispot", "mikrotik"]
LOGIN_URL_FIELDS: Final = ("username", "password", "mac", "ip", "landing")
"""What `{name}` in `login_url` is replaced with (URL-encoded): the one-time login, the device's MAC
and IP as the gateway reported them, and `landing_url`."""
LOGIN_URL_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
RADIUS_SECRET_MIN_LENGTH: Final = 16
"""RFC 2865 section 3 asks for at least 16 octets; shorter secrets make the MD5 hiding guessable."""
FASKEY_PATTERN: Final = re.compile(r"^\S{8,64}$")


def _web_address(value: str, what: str, example: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what}: not an http:// or https:// address (got {value!r}); write e.g. {example}")
    return value


def resolve_secret(model: StrictModel, name: str) -> SecretStr | None:
    """The secret `name` of `model` from `name`, `name`_file or `name`_env (at most one), stored back in `name`."""
    inline, file, env = (getattr(model, f"{name}{suffix}") for suffix in ("", "_file", "_env"))
    if inline is None and file is None and env is None:
        return None
    # config.py imports this module (and builds the defaults, which have no secret) before its
    # secret reader exists; by the time a file sets one, it does.
    from appliance.config import _read_secret

    value = _read_secret(inline, file, env, name)
    object.__setattr__(model, name, value)
    return value


class RadiusClientSettings(StrictModel):
    """One gateway (NAS) allowed to ask this box: where its packets come from and the secret it shares."""

    name: Slug = Field(description="Short name of the gateway, stored with its accounting records (e.g. 'mikrotik').")
    addresses: list[IPvAnyNetwork] = Field(
        min_length=1,
        max_length=16,
        description="Addresses or networks (192.168.88.1, 10.0.0.0/29) the gateway's RADIUS packets come from; "
        "packets from anywhere else are dropped and logged.",
    )
    secret: SecretStr | None = Field(
        None, description=f"Shared secret, the same as on the gateway; at least {RADIUS_SECRET_MIN_LENGTH} characters."
    )
    secret_file: Path | None = None
    secret_env: str | None = None
    coa_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of the gateway's RFC 5176 Disconnect-Request listener (3799: MikroTik with "
        "`/radius incoming set accept=yes`, CoovaChilli with `coaport 3799`): a revoked guest is cut off at once. "
        "Empty: revoking only refuses the guest's next login; the access ends at its session or idle timeout.",
    )
    require_message_authenticator: bool = Field(
        False,
        description="true: drop Access-Requests without a Message-Authenticator (BlastRADIUS, CVE-2024-3596). "
        "false: check it when present, and require it from this gateway once it has sent one.",
    )

    @model_validator(mode="after")
    def _resolve(self) -> RadiusClientSettings:
        secret = resolve_secret(self, "secret")
        if secret is None:
            raise ValueError("secret: required; set secret, secret_file or secret_env to the gateway's RADIUS secret")
        if len(secret.get_secret_value()) < RADIUS_SECRET_MIN_LENGTH:
            raise ValueError(
                f"secret: too short; use at least {RADIUS_SECRET_MIN_LENGTH} random characters "
                "(e.g. the output of `openssl rand -hex 16`) here and on the gateway"
            )
        return self


class RadiusSettings(StrictModel):
    """This box as the RADIUS server of a gateway with an external portal (MikroTik hotspot, CoovaChilli,
    pfSense, ZyXEL). The portal gives the identified guest a one-time login bound to the device's MAC; the
    gateway checks it here, with the MAC it sees itself, and sends the traffic accounting here."""

    host: str = Field(
        "0.0.0.0",  # noqa: S104 - gateways are on the LAN; only configured NAS addresses are answered
        description="Address to receive RADIUS on; 0.0.0.0: every interface (only the gateways listed in "
        "clients are answered).",
    )
    auth_port: int = Field(1812, ge=1, le=65535, description="Authentication port (Access-Request).")
    acct_port: int = Field(1813, ge=1, le=65535, description="Accounting port (Accounting-Request).")
    clients: list[RadiusClientSettings] = Field(
        default_factory=list, max_length=32, description="The gateways allowed to ask; at least one."
    )
    dialect: RadiusDialect = Field(
        "wispr",
        description="Attributes of an Access-Accept besides Session-Timeout and Idle-Timeout: standard: none; "
        "wispr: WISPr-Bandwidth-Max-Up/Down (pfSense, ZyXEL); chillispot: WISPr rates and "
        "ChilliSpot-Max-Total-Octets (CoovaChilli); mikrotik: Mikrotik-Rate-Limit and Mikrotik-Total-Limit.",
    )
    login_url: str = Field(
        "",
        max_length=1000,
        description="Where the guest's browser goes to log in to the gateway, with placeholders "
        "{username} {password} {mac} {ip} {landing}, e.g. "
        "http://10.1.0.1:3990/logon?username={username}&password={password}&userurl={landing} (CoovaChilli) or "
        "http://10.5.50.1/login?username={username}&password={password}&dst={landing} (MikroTik, login-by http-pap).",
    )
    password_encoding: Literal["plain", "chilli"] = Field(
        "plain",
        description="plain: the password as is (MikroTik http-pap); chilli: hidden with the challenge of "
        "CoovaChilli's redirect and uam_secret, as CoovaChilli's /logon expects.",
    )
    uam_secret: SecretStr | None = Field(None, description="CoovaChilli's uamsecret (chilli encoding only), if set.")
    uam_secret_file: Path | None = None
    uam_secret_env: str | None = None
    landing_url: str = Field(
        "",
        max_length=1000,
        description="Page the gateway opens after the login ({landing}), e.g. the portal's welcome page; "
        "empty: nothing.",
    )
    login_ttl_s: int = Field(
        120, ge=30, le=900, description="A one-time login must reach the gateway within this many seconds."
    )
    acct_interim_s: int = Field(
        300,
        ge=60,
        le=3600,
        description="Acct-Interim-Interval asked of the gateway: how often it reports the traffic of a session.",
    )
    coa_timeout_s: float = Field(
        3.0, ge=0.5, le=10, description="How long to wait for a gateway to confirm a Disconnect-Request."
    )

    @field_validator("login_url")
    @classmethod
    def _login_url(cls, v: str) -> str:
        if not v:
            return v
        unknown = sorted({name for name in LOGIN_URL_PLACEHOLDER.findall(v) if name not in LOGIN_URL_FIELDS})
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{unknown[0]}}}; use {', '.join('{' + f + '}' for f in LOGIN_URL_FIELDS)}"
            )
        if "{username}" not in v or "{password}" not in v:
            raise ValueError("must carry {username} and {password}: the gateway logs the guest in with them")
        return _web_address(v, "login_url", "http://10.5.50.1/login?username={username}&password={password}")

    @field_validator("landing_url")
    @classmethod
    def _landing(cls, v: str) -> str:
        return _web_address(v, "landing_url", "http://10.5.50.2:8081/") if v else v

    @model_validator(mode="after")
    def _consistent(self) -> RadiusSettings:
        resolve_secret(self, "uam_secret")
        if self.auth_port == self.acct_port:
            raise ValueError("auth_port and acct_port are the same; use two ports (usually 1812 and 1813)")
        names = [c.name for c in self.clients]
        if len(set(names)) != len(names):
            raise ValueError("clients: two gateways share a name; give each its own")
        networks = [(c.name, n) for c in self.clients for n in c.addresses]
        for i, (name_a, a) in enumerate(networks):
            for name_b, b in networks[i + 1 :]:
                if a.version == b.version and a.overlaps(b) and name_a != name_b:
                    raise ValueError(
                        f"clients: {name_a} and {name_b} both cover {a}; a packet must match one gateway only"
                    )
        return self

    def problems(self) -> list[str]:
        """What is missing for the driver to work (checked when driver = 'radius')."""
        out = []
        if not self.clients:
            out.append("radius.clients: no gateway configured; add a [[portal.gateway.radius.clients]] table")
        if not self.login_url:
            out.append("radius.login_url: required; the address of the gateway's login (see the example file)")
        return out


class OpenNdsSettings(StrictModel):
    """This box as the FAS (forwarding authentication service) of an OpenWrt router running openNDS."""

    fas_secure_enabled: Literal[1, 3] = Field(
        1,
        description="openNDS's fas_secure_enabled, the same on the router. 1: the router's parameters come "
        "base64-encoded (a guest could alter the MAC and IP shown to the portal, not whom the router lets in); "
        "3: they come encrypted with faskey and the router fetches authorisations itself (authmon), which needs "
        "this portal on https with a certificate the router trusts.",
    )
    faskey: SecretStr | None = Field(None, description="openNDS's faskey, the same on the router; 8 to 64 characters.")
    faskey_file: Path | None = None
    faskey_env: str | None = None
    gateway_address: str = Field(
        "",
        pattern=r"^$|^[A-Za-z0-9.-]+:[0-9]{1,5}$",
        description="The router's openNDS address as it tells the portal (gatewayaddress: its IP and "
        "gatewayport, e.g. 192.168.8.1:2050); guests are sent only there to finish logging in.",
    )
    authdir: str = Field(
        "opennds_auth", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="openNDS's authdir (its default is fine)."
    )
    fas_path: str = Field(
        "/opennds/fas",
        pattern=r"^/[A-Za-z0-9/_.-]{0,100}$",
        description="The path the router's faspath points at; level 3's authmon posts to it as well.",
    )
    landing_url: str = Field(
        "",
        max_length=1000,
        description="Level 1: the page openNDS opens after letting the guest in (redir), e.g. the portal's "
        "welcome page http://192.168.8.2:8081/ (never the address from the guest's query: that would be an "
        "open redirect).",
    )
    authmon_sources: list[IPvAnyNetwork] = Field(
        default_factory=list,
        max_length=16,
        description="Addresses allowed to post to the authmon endpoint (level 3); empty: the router's own address "
        "from gateway_address.",
    )
    authmon_wait_s: float = Field(
        30.0,
        ge=5,
        le=120,
        description="Level 3: how long a guest's login waits for the router's authmon to collect it "
        "(openNDS polls every nat_traversal_poll_interval, 10 s by default).",
    )

    @field_validator("landing_url")
    @classmethod
    def _landing(cls, v: str) -> str:
        return _web_address(v, "landing_url", "http://192.168.8.2:8081/") if v else v

    @model_validator(mode="after")
    def _resolve(self) -> OpenNdsSettings:
        key = resolve_secret(self, "faskey")
        if key is not None and not FASKEY_PATTERN.match(key.get_secret_value()):
            raise ValueError("faskey: use 8 to 64 characters without spaces, the same as the router's faskey")
        return self

    def problems(self) -> list[str]:
        """What is missing for the driver to work (checked when driver = 'opennds')."""
        out = []
        if self.faskey is None:
            out.append("opennds.faskey: required; set faskey, faskey_file or faskey_env to the router's faskey")
        if not self.gateway_address:
            out.append("opennds.gateway_address: required; the router's IP and gatewayport, e.g. 192.168.8.1:2050")
        if self.fas_secure_enabled == 1 and not self.landing_url:
            out.append("opennds.landing_url: required at level 1; the page guests see once the router lets them in")
        return out


class GatewaySettings(StrictModel):
    driver: Literal["none", "nftables", "radius", "opennds"] = Field(
        "none",
        description=(
            "none: nothing lets guests through (the portal only identifies them); nftables: this box is the "
            "guest gateway; radius: an external gateway (MikroTik, CoovaChilli, pfSense, ZyXEL) asks this box; "
            "opennds: an OpenWrt router with openNDS uses this box as its FAS."
        ),
    )
    nftables: NftablesSettings = NftablesSettings()
    radius: RadiusSettings = RadiusSettings()
    opennds: OpenNdsSettings = OpenNdsSettings()

    @model_validator(mode="after")
    def _chosen_driver_complete(self) -> GatewaySettings:
        problems: list[str] = []
        if self.driver == "radius":
            problems = self.radius.problems()
        elif self.driver == "opennds":
            problems = self.opennds.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self
