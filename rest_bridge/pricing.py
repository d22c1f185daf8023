"""Prices in points, from configuration (defaults in CONTRACT.md)."""

from __future__ import annotations

from typing import Any

from rest_bridge.settings import BridgeSettings

# A video's price scales with its pixel count relative to 720p, and with duration relative to 4 s.
RESOLUTION_SCALE = {"360p": 0.25, "520p": 0.5, "720p": 1.0, "1080p": 2.25}


def image_price(settings: BridgeSettings, num_images: int) -> int:
    return settings.price_image * num_images


def video_price(settings: BridgeSettings, duration_s: int, resolution: str) -> int:
    return max(1, round(settings.price_video * (duration_s / 4) * RESOLUTION_SCALE[resolution]))


def mesh_price(settings: BridgeSettings) -> int:
    return settings.price_3d


def price_table(settings: BridgeSettings) -> dict[str, dict[str, Any]]:
    return {
        "image": {"points_per_image": settings.price_image},
        "video": {
            "points_for_4s_720p": settings.price_video,
            "resolution_scale": RESOLUTION_SCALE,
            "scales_with_duration": True,
        },
        "mesh": {"points": settings.price_3d},
    }
