"""An actor in memory, or a placeholder for one, as the host's table of activations holds it."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from ._actor import ActivationStatus, Actor, ActorContext


class Activation:
    """One actor in memory, or a placeholder for one (NEW: its state not loaded yet, no context)."""

    __slots__ = ("key", "context", "actor", "lock", "status", "waiting", "last_used")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.context: ActorContext | None = None
        self.actor: Actor | None = None
        self.lock = asyncio.Lock()
        self.status = ActivationStatus.NEW
        self.waiting = 0
        self.last_used = time.monotonic()

    @property
    def ctx(self) -> ActorContext:
        if self.context is None:
            raise RuntimeError(f"actor {self.key} has no context yet: expected ACTIVE, is {self.status.name}")
        return self.context


#: The host's activations by (actor type, actor id), least recently used first.
Activations = OrderedDict[tuple[str, str], Activation]
