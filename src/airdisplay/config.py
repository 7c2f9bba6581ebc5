"""Service settings: each option's name, variable, default, type, help text and limits, written once.

`airdisplay serve` makes its command-line options from these fields (cli/_common.py): the option
`--field-name`, read from AIRDISPLAY_FIELD_NAME when not given, its help the field's description, its
validation the field's. `Settings(...)` itself reads only its arguments, never the environment, so that a
test that builds one does not depend on the shell it runs in: the command line is what reads the environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .access import MIN_KEY_BITS, StartupKeyError, key_bits
from .actors import DEFAULT_IDLE_TIMEOUT
from .domain import DEFAULT_DISPLAY_SECONDS, DEFAULT_MAX_TEXT_LENGTH, DEFAULT_QUEUE_LENGTH, BannerRules
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

#: A quarter of history: complaints and billing look back weeks, not years.
DEFAULT_HISTORY_DAYS = 90.0
#: A queue of 1,000 bookings is 1,000 minutes (16 h) of one banner's messages: past any real schedule,
#: and a banner's bookings are one state value its actor reads whole.
MAX_QUEUE_LENGTH = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Option:
    """How a field is given where the rule (`--field-name`, AIRDISPLAY_FIELD_NAME) does not fit it."""

    flag: str = ""
    #: The variables read when the option is not given; the first is its name, any others older names.
    variables: tuple[str, ...] = ()
    hidden: bool = False
    #: A path option that must name a file, or a directory (Click refuses the other kind at once).
    path: Literal["file", "directory"] | None = None
    #: False: a secret read from its variable only; a command line is visible to every user (`ps`).
    command_line: bool = True


class Settings(BaseSettings):
    """Everything an AirDisplay server is configured with."""

    model_config = SettingsConfigDict(env_prefix="AIRDISPLAY_", frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="Address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on")
    data_dir: Annotated[Path, Option(path="directory")] = Field(
        Path("./data"), description="The server's data directory: the SQLite database, keys.json"
    )
    message_seconds: float = Field(DEFAULT_DISPLAY_SECONDS, gt=0, description="How long a message shows")
    max_text_length: int = Field(
        DEFAULT_MAX_TEXT_LENGTH, ge=1, le=1000, description="Longest message a banner shows"
    )
    #: `--api-key` is a hidden older spelling of the option (cli/_serve.py).
    operator_key: Annotated[
        SecretStr | None, Option(variables=("AIRDISPLAY_OPERATOR_KEY", "AIRDISPLAY_API_KEY"))
    ] = Field(
        None,
        description="An operator key for automation, besides those made with 'airdisplay keys create'",
    )
    submit_access: Literal["open", "key"] = Field(
        "open",
        description="open: anyone may submit messages (rate-limited); key: submitting needs a submitter key",
    )
    #: A person typing messages sends a few a minute (a banner shows one a minute); 30 leaves room for a
    #: busy shared address.
    submit_rate: float = Field(
        30.0, ge=0, description="Submits per minute per client after the burst; 0 turns the limit off"
    )
    submit_burst: int = Field(
        10, ge=1, description="Submits a client may send at once before the rate applies"
    )
    #: A person waits on a few banners at once; people behind one shared address (a venue's Wi-Fi) share
    #: it, hence more than one or two (access/_bookings.py).
    bookings_per_client: int = Field(
        5,
        ge=0,
        description="Waiting bookings one client may hold across the fleet (operator keys: no limit); "
        "0: no limit",
    )
    #: A /64 is one subscriber's LAN (see access/_limits.py).
    rate_limit_ipv6_prefix: int = Field(
        64,
        ge=1,
        le=128,
        description="IPv6 clients share the submit and stream limits per network of this prefix length; "
        "128: per address (IPv4 is always per address)",
    )
    #: The web UI uses one per tab.
    max_streams_per_client: int = Field(50, ge=1, description="Open WebSocket/SSE streams per client address")
    #: A link past it is closed with 1013 before its token is checked (api/routes/devices.py).
    max_device_links: int = Field(
        0,
        ge=0,
        description="Device links this process holds at most; past it a link is closed with 1013 (try "
        "again later); 0: nine tenths of the connections the open-file limit leaves room for",
    )
    #: Trusted proxies (forwarded_allow_ips) are not limited, nor, in Dapr mode, daprd on loopback.
    max_connections_per_client: int = Field(
        DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        ge=0,
        description="Open connections per client address, streams and device links included; raise it for "
        "a fleet behind one NAT address; 0: no limit",
    )
    #: Counted from the connection's opening, or from the first byte of a later request.
    header_timeout: float = Field(
        DEFAULT_HEADER_TIMEOUT, gt=0, description="Seconds a connection has to send a complete request head"
    )
    #: See domain/content.py; None: no blocklist.
    blocklist: Annotated[Path | None, Option(path="file")] = Field(
        None,
        description="File of words, phrases or re:patterns refused in messages; edits apply within a second",
    )
    cors_origins: Annotated[tuple[str, ...], Option(flag="--cors-origin")] = Field(
        (), description="An origin whose pages may call the API (repeatable; none by default)"
    )
    #: uvicorn's forwarded_allow_ips; None: no proxy is trusted.
    forwarded_allow_ips: str | None = Field(
        None, description="Proxies trusted to set X-Forwarded-For, so limits apply per real client"
    )
    idle_seconds: float = Field(
        DEFAULT_IDLE_TIMEOUT, gt=0, description="Idle time before a banner actor leaves memory"
    )
    durability: Literal["full", "normal"] = Field(
        "full", description="SQLite sync: full survives power loss, normal survives crashes"
    )
    #: Nothing at all (heartbeat, ack) for this long: the banner is marked offline and disconnected.
    device_timeout: float = Field(
        30.0, gt=0, description="Seconds without a heartbeat before a banner counts as offline"
    )
    #: A link that ends (the device left, broke the protocol, fell behind) marks its banner offline only if
    #: no new link came within this time: a reconnect storm then writes nothing (api/routes/devices.py).
    device_offline_grace: float = Field(
        10.0,
        ge=0,
        description="Seconds a banner whose device link ended still counts as online, waiting for it to "
        "reconnect (0: offline at once)",
    )
    offline_policy: Literal["accept", "refuse"] = Field(
        "accept",
        description="Messages for offline banners: accept (delivered on reconnect) or refuse with 503",
    )
    #: A banner runs through its bookings back to back (domain/bookings.py); 0 answers bookings 403.
    queue_length: int = Field(
        DEFAULT_QUEUE_LENGTH,
        ge=0,
        le=MAX_QUEUE_LENGTH,
        description="Bookings a banner holds behind its message (each waits one message time more); "
        "0 turns booking off",
    )
    #: Operators answer complaints and bill from it (domain/history.py); pruned an hour at a time.
    history_days: float = Field(
        DEFAULT_HISTORY_DAYS,
        ge=0,
        description="Days each shown message stays in the history; 0 keeps it for good",
    )
    runtime: Literal["embedded", "dapr"] = Field(
        "embedded", description="embedded: one process with SQLite; dapr: banner actors on daprd"
    )
    #: Dapr's own variable, which daprd's tooling (`dapr run`) sets for the app.
    dapr_http_port: Annotated[int, Option(variables=("DAPR_HTTP_PORT",))] = Field(
        3500, ge=1, le=65535, description="Dapr mode: daprd's HTTP port"
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Dapr mode: Redis for the fleet directory")
    dapr_pubsub: str = Field("pubsub", description="Dapr mode: pub/sub component name")
    dapr_topic: str = Field("banner-changes", description="Dapr mode: topic of banner events")
    #: False serves every submit through the FastAPI route: for bench/submit_vs_bare.py.
    submit_fast_path: Annotated[bool, Option(hidden=True)] = Field(
        True,
        description="Serve well-formed submits in front of the middleware stack (for benchmarks: "
        "api/_submit.py)",
    )
    access_log: bool = Field(False, description="Log every request and WebSocket connection")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as text for a terminal, or one JSON object a line (time, level, logger, "
        "message, banner_id where known) for a log collector",
    )
    max_body_bytes: Annotated[int, Option(hidden=True)] = Field(
        DEFAULT_MAX_BODY_BYTES, ge=256, description="Request bodies above this many bytes are refused (413)"
    )
    #: Coalescing: see realtime/_subscriber.py.
    send_buffer: Annotated[int, Option(hidden=True)] = Field(
        256, ge=1, le=100_000, description="Frames buffered per stream connection before coalescing"
    )
    stall_seconds: Annotated[float, Option(hidden=True)] = Field(
        DEFAULT_STALL_SECONDS,
        gt=0,
        description="A stream client whose frames wait unsent this long is disconnected (it stopped reading)",
    )
    ping_seconds: Annotated[float, Option(hidden=True)] = Field(
        15.0, gt=0, description="Keep-alive interval of WebSocket and SSE streams"
    )
    # Dapr's own variables, as daprd's tooling and its Kubernetes injector set them.
    dapr_api_token: Annotated[SecretStr | None, Option(variables=("DAPR_API_TOKEN",), command_line=False)] = (
        Field(None, description="Dapr mode: the token the app sends to daprd")
    )
    app_api_token: Annotated[SecretStr | None, Option(variables=("APP_API_TOKEN",), command_line=False)] = (
        Field(None, description="Dapr mode: the token daprd must send to call the app's actor routes")
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the arguments: the command line reads the environment (see the module's docstring)."""
        return (init_settings,)

    @classmethod
    def option(cls, name: str) -> Option:
        """How field `name` is given: its Option, with the rule's flag and variable where it names none."""
        declared = next((m for m in cls.model_fields[name].metadata if isinstance(m, Option)), Option())
        prefix = cls.model_config.get("env_prefix", "")
        return dataclasses.replace(
            declared,
            flag=declared.flag or f"--{name.replace('_', '-')}",
            variables=declared.variables or (f"{prefix}{name.upper()}",),
        )

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field `name`, for code that takes the same value without a Settings."""
        return cls.model_fields[name].get_default(call_default_factory=True)

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
            queue_length=self.queue_length,
        )

    @property
    def dapr_url(self) -> str:
        """daprd's HTTP API: the sidecar runs beside the app, on loopback."""
        return f"http://127.0.0.1:{self.dapr_http_port}"

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
