"""Pixel sizes and frame counts for video requests.

The public API speaks in resolution names, aspect ratios and seconds; LTX models
need sides that are multiples of 32 and ``8k+1`` frames. These functions bridge
the two (generate a little larger, then crop to the exact size). They are pure and
check nothing: the plan (``plans/video.py``) has accepted the request, and the
model file's entry (``model_config.py``) its factors and frame rate.
"""

from __future__ import annotations

import math

import numpy as np

from genserve.vocabulary import ratio_parts, short_side


def output_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """The ``(width, height)`` a resolution name and aspect ratio mean, exactly.

    The resolution names the short side (``"720p"`` at 16:9 is 1280x720, at 9:16
    720x1280); the long side is the short one times the ratio, rounded to an even
    number (H.264 in yuv420p needs even sides): 520p 16:9 is 924x520.
    """
    ratio_w, ratio_h = ratio_parts(aspect_ratio)
    short = short_side(resolution)
    long = 2 * round(short * max(ratio_w, ratio_h) / min(ratio_w, ratio_h) / 2)
    return (long, short) if ratio_w >= ratio_h else (short, long)


def video_size(resolution: str, aspect_ratio: str, factor: int) -> tuple[int, int]:
    """The ``(width, height)`` to generate at: the smallest multiples of ``factor``
    covering :func:`output_size` (LTX: 32, so 720p 16:9 is generated at 1280x736).

    The decoded frames are then centre-cropped to the output size (:func:`centre_crop`),
    so a model's multiple never changes the size a client gets.
    """
    width, height = output_size(resolution, aspect_ratio)
    return math.ceil(width / factor) * factor, math.ceil(height / factor) * factor


def centre_crop(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """The middle ``width`` x ``height`` of [T, H, W, C] frames (a view, no copy)."""
    frame_h, frame_w = frames.shape[1], frames.shape[2]
    if width > frame_w or height > frame_h:
        raise ValueError(f"cannot crop {frame_w}x{frame_h} frames to {width}x{height}")
    top, left = (frame_h - height) // 2, (frame_w - width) // 2
    return frames[:, top : top + height, left : left + width]


def encoded_frame_count(duration_s: float, fps: float) -> int:
    """Frames the MP4 carries, so that it lasts ``duration_s`` to within one frame."""
    return max(1, round(duration_s * fps))


def frame_count(duration_s: int, fps: float, temporal_factor: int) -> int:
    """Frames to generate: the smallest ``temporal_factor*k+1`` covering the clip.

    LTX models only produce ``8k+1`` frames, so 4 s at 24 fps (96 frames) asks
    for 97. The surplus (at most ``temporal_factor`` frames, all at the end) is
    dropped before encoding: the caller keeps the first
    ``encoded_frame_count(duration_s, fps)`` frames, so the file's duration is
    exactly the requested one rather than a fraction of a frame longer.
    """
    needed = encoded_frame_count(duration_s, fps)
    return math.ceil((needed - 1) / temporal_factor) * temporal_factor + 1
