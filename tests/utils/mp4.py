"""Reading an MP4 back the slow, thorough way: how tests check what the encoder wrote."""

from __future__ import annotations

import io
import struct

import av
import numpy as np


def mp4_box_order(data: bytes) -> list[str]:
    """Top-level box types in file order, e.g. ``["ftyp", "moov", "free", "mdat"]``."""
    types: list[str] = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            if offset + 16 > len(data):
                break
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        elif size == 0:
            size = len(data) - offset
        if size < 8:
            break
        types.append(kind.decode("latin-1"))
        offset += size
    return types


def decoded_frame_sizes(data: bytes) -> list[tuple[int, int]]:
    """``(width, height)`` of every video frame, decoded as a player would.

    Slow next to ``probe_mp4`` (every frame is decoded): it is how a test checks
    that the index tells the truth, not something a request should wait for.
    """
    with av.open(io.BytesIO(data), mode="r") as container:
        return [(frame.width, frame.height) for frame in container.decode(video=0)]


def decoded_rgb(data: bytes) -> list[np.ndarray]:
    """Every video frame as a player shows it: uint8 ``[height, width, 3]`` RGB arrays."""
    with av.open(io.BytesIO(data), mode="r") as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def same_frames(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    """Whether two clips decode to the same pictures, frame for frame."""
    return len(first) == len(second) and all(
        np.array_equal(a, b) for a, b in zip(first, second, strict=True)
    )
