"""Service settings: one validated object built by the CLI (flags and AIRDISPLAY_* variables) or by tests."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .actors import DEFAULT_IDLE_TIMEOUT
from .domain import DEFAULT_DISPLAY_SECONDS, DEFAULT_MAX_TEXT_LENGTH, BannerRules

#: Request bodies above this are refused with 413; a banner message is at most a few hundred bytes.
DEFAULT_MAX_BODY_BYTES = 16 * 1024


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
    #: "open": anyone may submit messages (rate-limited); "key": submitting needs a submitter key.
    submit_access: Literal["open", "key"] = "open"
    #: Submits per minute per client after the burst; 0 turns the limit off. A person typing messages
    #: sends a few a minute (a banner shows one a minute); 30 leaves room for a busy shared address.
    submit_rate: float = Field(30.0, ge=0)
    submit_burst: int = Field(10, ge=1)
    #: Open WebSocket and SSE streams per client address (the web UI uses one per tab).
    max_streams_per_client: int = Field(50, ge=1)
    #: Words and patterns refused in messages (see domain/content.py); None: no blocklist.
    blocklist: Path | None = None
    #: Origins whose pages may call the API from a browser; none by default (same-origin only).
    cors_origins: tuple[str, ...] = ()
    idle_seconds: float = Field(DEFAULT_IDLE_TIMEOUT, gt=0)
    durability: Literal["full", "normal"] = "full"
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
    stall_seconds: float = Field(10.0, gt=0)
    #: Keep-alive interval of WebSocket and SSE streams.
    ping_seconds: float = Field(15.0, gt=0)

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
        """Refuse to serve mutating routes beyond this machine without a credential the operator set."""
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
