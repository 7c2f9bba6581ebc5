"""The HTTP edge: REST routes over a BannerRuntime."""

from .app import create_app

__all__ = ["create_app"]
