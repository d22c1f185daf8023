"""Reading GLB files in tests: the header, the glTF JSON and its vertex attributes."""

from __future__ import annotations

import json
import struct
from typing import Any


def glb_json(data: bytes) -> dict[str, Any]:
    """The JSON chunk of a GLB after checking its header: magic, version 2, length."""
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF"
    assert version == 2
    assert length == len(data)
    chunk_length, chunk_type = struct.unpack_from("<I4s", data, 12)
    assert chunk_type == b"JSON"
    document: dict[str, Any] = json.loads(data[20 : 20 + chunk_length])
    assert document["asset"]["version"] == "2.0"
    return document


def primitive_attributes(document: dict[str, Any]) -> set[str]:
    return {
        name
        for mesh in document["meshes"]
        for primitive in mesh["primitives"]
        for name in primitive["attributes"]
    }
