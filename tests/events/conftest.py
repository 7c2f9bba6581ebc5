"""Banners and changes in the shapes the event package carries, for its tests."""

from __future__ import annotations

from datetime import UTC, datetime

from airdisplay.domain import (
    Banner,
    BannerChanged,
    BannerRules,
    ChangeKind,
    SubmissionLog,
    register_banner,
    submit_message,
)

NOW = datetime(2025, 6, 15, 12, 0, 0, 123456, tzinfo=UTC)


def showing(banner_id: str = "b-1") -> Banner:
    """A banner showing a message, its name and text with characters JSON escapes or may keep as they are."""
    new = register_banner(banner_id, 'Zürich ✈ Ålesund "north" \\ tail', NOW)
    decision = submit_message(
        new, SubmissionLog(), "Grüße 👋🏽 नमस्ते 🇳🇴", now=NOW, rules=BannerRules(), message_id="m2"
    )
    return decision.banner


def shown(banner: Banner, *, carried: bool = True) -> BannerChanged:
    """The change that showed `banner`'s message; with the bytes its actor stored when `carried`."""
    stored = banner.model_dump_json().encode() if carried else None
    return BannerChanged(ChangeKind.MESSAGE_SHOWN, banner.id, banner.version, banner, NOW, stored)


def deleted(banner_id: str = "b-1", version: int = 3) -> BannerChanged:
    return BannerChanged(ChangeKind.DELETED, banner_id, version, None, NOW)
