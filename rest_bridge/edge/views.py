"""JSON views shared by several routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_bridge.state import BridgeState
from storage.models import Asset


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def file_view(state: BridgeState, asset: Asset) -> dict[str, Any]:
    """One output file as the document shows an image: URL, type, name, size, pixels."""
    return {
        "url": state.file_url(asset.token, asset.file_name),
        "content_type": asset.content_type,
        "file_name": asset.file_name,
        "file_size": asset.file_size,
        "width": asset.width,
        "height": asset.height,
    }
