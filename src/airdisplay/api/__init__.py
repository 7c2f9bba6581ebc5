"""The HTTP edge: REST routes over a BannerRuntime."""

from .app import build_runtime, create_app

__all__ = ["build_runtime", "create_app"]
