"""Our serializer for Dapr actor messages and state: plain JSON, no guessing of types.

The SDK's DefaultJSONSerializer turns any string that looks like a duration or a date ("5m", "2026-01-01")
into a timedelta or datetime on the way back, so a banner showing "5m" would come back as "0h5m0s0ms0μs".
This one returns exactly the JSON that was sent. It still writes the two non-JSON types the SDK itself
hands to the message serializer: timedelta (reminder and timer registration) as Dapr durations, and
bytes (reminder data) inside a value as base64.

A value that is `bytes` itself is JSON encoded already and is written as it is: the SDK passes raw
bodies so, and the banner actor stores its banner as the bytes of `model_dump_json` (the same bytes the
embedded store keeps, and the same as the `json.dumps` of the dict written before them).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from dapr.serializers import Serializer
from dapr.serializers.util import convert_to_dapr_duration


def _encode_special(value: object) -> object:
    if isinstance(value, timedelta):
        return convert_to_dapr_duration(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class PlainJSONSerializer(Serializer):
    """JSON in, the same JSON out."""

    def serialize(self, obj: object, custom_hook: Callable[[object], bytes] | None = None) -> bytes:
        if isinstance(obj, bytes):
            return obj  # JSON already: a raw body from the SDK, or a state value from model_dump_json
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_encode_special).encode()

    def deserialize(
        self,
        data: bytes,
        data_type: type | None = object,
        custom_hook: Callable[[bytes], object] | None = None,
    ) -> Any:
        if not data:
            return None
        return json.loads(data)
