"""Who may do what: API keys and roles, abuse limits, and the content blocklist. No HTTP in here."""

from ._blocklist import Blocklist
from ._keys import KEYS_FILE, KeyRecord, KeyRing, KeysFile, Principal, Role
from ._limits import ConnectionLimiter, RateDecision, RateLimiter, retry_after_seconds
from .exceptions import BlocklistError, KeyFileError, UnknownKey

__all__ = [
    "KEYS_FILE",
    "Blocklist",
    "BlocklistError",
    "ConnectionLimiter",
    "KeyFileError",
    "KeyRecord",
    "KeyRing",
    "KeysFile",
    "Principal",
    "RateDecision",
    "RateLimiter",
    "Role",
    "UnknownKey",
    "retry_after_seconds",
]
