"""Where banner actors run: the embedded runtime (default) or Dapr; one interface for both.

A runtime is chosen by name (`open_runtime`), the way AnyIO picks a backend: its module is imported only
then, so importing this package for the interface brings in neither SQLite (embedded) nor the Dapr SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    BannerRuntime,
    ChangeListener,
    RuntimeEndpoints,
    RuntimeNotRunning,
    RuntimeUnavailable,
    StorageUnavailable,
)
from .behaviour import Registration

if TYPE_CHECKING:
    from ..config import Settings
    from .embedded import EmbeddedRuntime

#: The runtimes by the name operators choose them by (`airdisplay serve --runtime NAME`).
RUNTIME_NAMES = ("embedded", "dapr")


def open_runtime(settings: Settings) -> BannerRuntime:
    """The runtime `settings.runtime` names, built from the settings (not started)."""
    if settings.runtime == "dapr":
        from .dapr import DaprRuntime

        return DaprRuntime.from_settings(settings)
    if settings.runtime == "embedded":
        from .embedded import EmbeddedRuntime

        return EmbeddedRuntime.from_settings(settings)
    raise ValueError(f"no runtime is named {settings.runtime!r}; choose one of {', '.join(RUNTIME_NAMES)}")


def __getattr__(name: str) -> Any:
    """`EmbeddedRuntime` on first use, so that the interface alone does not import SQLite."""
    if name == "EmbeddedRuntime":
        from .embedded import EmbeddedRuntime

        return EmbeddedRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RUNTIME_NAMES",
    "BannerRuntime",
    "ChangeListener",
    "EmbeddedRuntime",
    "Registration",
    "RuntimeEndpoints",
    "RuntimeNotRunning",
    "RuntimeUnavailable",
    "StorageUnavailable",
    "open_runtime",
]
