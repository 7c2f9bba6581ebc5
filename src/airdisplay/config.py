"""Service settings: one validated object built by the CLI (flags and AIRDISPLAY_* variables) or by tests."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .access import MIN_KEY_BITS, StartupKeyError, key_bits
from .actors import DEFAULT_IDLE_TIMEOUT
from .domain import DEFAULT_DISPLAY_SECONDS, DEFAULT_MAX_TEXT_LENGTH, BannerRules
from .realtime import DEFAULT_STALL_SECONDS

#: Request bodies above this are refused with 413; a banner message is at most a few hundred bytes.
DEFAULT_MAX_BODY_BYTES = 16 * 1024
#: Connections one client address may hold (cli/_connections.py). A browser holds about 6 besides its
#: streams (at most max_streams_per_client); `airdisplay simulate --banners 400` holds 400 device links. A
#: fleet of more devices behind one NAT address needs a higher limit.
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 1000
#: Seconds for a complete request head. Go servers are usually given 5-10 s (ReadHeaderTimeout); a head is
#: a few hundred bytes, which even a weak cellular link sends in well under a second.
DEFAULT_HEADER_TIMEOUT = 10.0


class Settings(BaseModel):
    """Everything an AirDisplay server is configured with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path("./data")
    message_seconds: float = Field(DEFAULT_DISPLAY_SECONDS, gt=0)
    max_text_length: int = Field(DEFAULT_MAX_TEXT_LENGTH, ge=1, le=1000)
    #: An operator key given at start-up (AIRDISPLAY_OPERATOR_KEY), besides those in the keys file.
    operator_key: SecretStr | None = None
    #: Proxies trusted to set X-Forwarded-For (uvicorn's forwarded_allow_ips); None: no proxy is trusted.
    forwarded_allow_ips: str | None = None
    #: "open": anyone may submit messages (rate-limited); "key": submitting needs a submitter key.
    submit_access: Literal["open", "key"] = "open"
    #: Submits per minute per client after the burst; 0 turns the limit off. A person typing messages
    #: sends a few a minute (a banner shows one a minute); 30 leaves room for a busy shared address.
    submit_rate: float = Field(30.0, ge=0)
    submit_burst: int = Field(10, ge=1)
    #: IPv6 clients share the submit and stream limits per network of this prefix length (a /64 is one
    #: subscriber's LAN; see access/_limits.py); 128 counts each address. IPv4 is always per address.
    rate_limit_ipv6_prefix: int = Field(64, ge=1, le=128)
    #: Open WebSocket and SSE streams per client address (the web UI uses one per tab).
    max_streams_per_client: int = Field(50, ge=1)
    #: Open connections per client address, streams and device links included; 0: no limit. Trusted
    #: proxies (forwarded_allow_ips) are not limited, nor, in Dapr mode, daprd on loopback.
    max_connections_per_client: int = Field(DEFAULT_MAX_CONNECTIONS_PER_CLIENT, ge=0)
    #: A connection that has not sent a complete request head this long after opening (or after the first
    #: byte of a later request) is closed.
    header_timeout: float = Field(DEFAULT_HEADER_TIMEOUT, gt=0)
    #: Words and patterns refused in messages (see domain/content.py); None: no blocklist.
    blocklist: Path | None = None
    #: Origins whose pages may call the API from a browser; none by default (same-origin only).
    cors_origins: tuple[str, ...] = ()
    idle_seconds: float = Field(DEFAULT_IDLE_TIMEOUT, gt=0)
    durability: Literal["full", "normal"] = "full"
    #: False serves every submit through the FastAPI route (api/_submit.py): for bench/submit_vs_bare.py.
    submit_fast_path: bool = True
    runtime: Literal["embedded", "dapr"] = "embedded"
    #: Dapr mode: the sidecar's HTTP API, the pub/sub component and topic, and the directory's Redis.
    dapr_url: str = "http://127.0.0.1:3500"
    dapr_pubsub: str = "pubsub"
    dapr_topic: str = "banner-changes"
    redis_url: str = "redis://127.0.0.1:6379/0"
    dapr_api_token: SecretStr | None = None
    app_api_token: SecretStr | None = None
    #: A device that sends nothing (heartbeat, ack) for this long is marked offline and disconnected.
    device_timeout: float = Field(30.0, gt=0)
    #: Messages for offline banners: "accept" (the banner catches up on reconnect) or "refuse" (503).
    offline_policy: Literal["accept", "refuse"] = "accept"
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=256)
    #: Frames buffered per stream connection before coalescing (see realtime/_subscriber.py).
    send_buffer: int = Field(256, ge=1, le=100_000)
    #: A stream client whose frames wait unsent this long is disconnected (it stopped reading).
    stall_seconds: float = Field(DEFAULT_STALL_SECONDS, gt=0)
    #: Keep-alive interval of WebSocket and SSE streams.
    ping_seconds: float = Field(15.0, gt=0)

    @field_validator("operator_key")
    @classmethod
    def _usable_key(cls, key: SecretStr | None) -> SecretStr | None:
        """Surrounding whitespace (a secret file's newline) cannot be sent in a header: drop it."""
        if key is None:
            return None
        stripped = key.get_secret_value().strip()
        if not stripped:
            raise ValueError("the operator key is blank")
        return SecretStr(stripped)

    @property
    def rules(self) -> BannerRules:
        return BannerRules(
            max_text_length=self.max_text_length,
            display_seconds=self.message_seconds,
            refuse_offline=self.offline_policy == "refuse",
        )

    @property
    def is_loopback(self) -> bool:
        """True when the server listens only on this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check_exposure(self, *, has_operator_key: bool) -> None:
        """Refuse to serve mutating routes beyond this machine without a credential the operator set, or
        with a start-up key short enough to guess (StartupKeyError)."""
        if not has_operator_key and not self.is_loopback:
            raise ValueError(
                f"listening on {self.host} needs an operator key: create one with "
                "'airdisplay keys create --role operator' or set AIRDISPLAY_OPERATOR_KEY; "
                "without one, AirDisplay only listens on 127.0.0.1"
            )
        if self.runtime == "dapr" and self.app_api_token is None and not self.is_loopback:
            raise ValueError(
                f"listening on {self.host} in Dapr mode needs APP_API_TOKEN, so that only daprd can call "
                "the actor routes (/actors/...); give daprd the same token (dapr.io/app-token-secret)"
            )
        reachable = not self.is_loopback or self.forwarded_allow_ips is not None
        if self.operator_key is not None and reachable:
            bits = key_bits(self.operator_key.get_secret_value())
            if bits < MIN_KEY_BITS:
                where = f"listening on {self.host}" if not self.is_loopback else "a server behind a proxy"
                raise StartupKeyError(
                    f"a key of at most {bits} random bits is too weak for {where}, which needs "
                    f"{MIN_KEY_BITS}: use 'airdisplay keys create --role operator', or a random key such as "
                    "'openssl rand -hex 32' prints"
                )
