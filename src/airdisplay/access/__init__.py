"""Who may do what: API keys and roles, abuse limits, and the content blocklist. No HTTP in here."""

from ._blocklist import Blocklist
from ._bookings import BookingQuota, HoldLedger, MemoryHolds
from ._keyring import KeyRing, operator_notice, operator_routes_open
from ._keys import KEYS_FILE, MIN_KEY_BITS, OPERATOR_MARKER, KeyRecord, KeysFile, Principal, Role, key_bits
from ._limits import ConnectionLimiter, RateDecision, RateLimiter, client_key, retry_after_seconds
from .exceptions import BlocklistError, KeyFileError, OperatorKeysRemain, StartupKeyError, UnknownKey

__all__ = [
    "KEYS_FILE",
    "MIN_KEY_BITS",
    "OPERATOR_MARKER",
    "Blocklist",
    "BookingQuota",
    "HoldLedger",
    "BlocklistError",
    "ConnectionLimiter",
    "KeyFileError",
    "KeyRecord",
    "KeyRing",
    "MemoryHolds",
    "KeysFile",
    "OperatorKeysRemain",
    "Principal",
    "RateDecision",
    "RateLimiter",
    "Role",
    "StartupKeyError",
    "UnknownKey",
    "client_key",
    "key_bits",
    "operator_notice",
    "operator_routes_open",
    "retry_after_seconds",
]
