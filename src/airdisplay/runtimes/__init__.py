"""Where banner actors run: the embedded runtime (default) or Dapr; one interface for both."""

from .base import BannerRuntime, ChangeListener, RuntimeUnavailable
from .behaviour import Registration
from .embedded import EmbeddedRuntime

__all__ = ["BannerRuntime", "ChangeListener", "EmbeddedRuntime", "Registration", "RuntimeUnavailable"]
