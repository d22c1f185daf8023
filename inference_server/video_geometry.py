"""Pixel sizes and frame counts for video requests.

The public API speaks in resolution names, aspect ratios and seconds; LTX models
need sides that are multiples of 32 and ``8k+1`` frames. These functions bridge
the two, and are pure so the bridge can price and validate a request with the
same numbers the inference server will use.
"""

from __future__ import annotations

import math

from genserve.vocabulary import RESOLUTIONS, VIDEO_ASPECT_RATIOS, ratio_parts, short_side
from inference_server.errors import InvalidArgument


def _multiples_near(value: float, factor: int) -> list[int]:
    """The multiples of ``factor`` just below and above ``value`` (never zero)."""
    low = max(factor, math.floor(value / factor) * factor)
    high = max(factor, math.ceil(value / factor) * factor)
    return sorted({low, high})


def video_size(resolution: str, aspect_ratio: str, factor: int) -> tuple[int, int]:
    """Return ``(width, height)`` for a resolution name and aspect ratio.

    The resolution names the short side (``"720p"`` at 16:9 is about 1280x720).
    Each side becomes a multiple of ``factor`` next to its exact value; of those
    candidates the one whose ratio is closest to the requested one wins, then the
    one whose area is closest, so 720p 16:9 with factor 32 gives 1280x736.
    """
    if resolution not in RESOLUTIONS:
        raise InvalidArgument(
            f"resolution must be one of {', '.join(RESOLUTIONS)}; got {resolution!r}"
        )
    if aspect_ratio not in VIDEO_ASPECT_RATIOS:
        raise InvalidArgument(
            f"aspect_ratio must be one of {', '.join(VIDEO_ASPECT_RATIOS)}; got {aspect_ratio!r}"
        )
    if factor < 1:
        raise InvalidArgument(f"size factor must be a positive integer; got {factor}")
    ratio_w, ratio_h = ratio_parts(aspect_ratio)
    short = short_side(resolution)
    if ratio_w >= ratio_h:
        exact_w, exact_h = short * ratio_w / ratio_h, float(short)
    else:
        exact_w, exact_h = float(short), short * ratio_h / ratio_w
    target_log_ratio = math.log(ratio_w / ratio_h)
    target_area = exact_w * exact_h
    candidates = [
        (w, h) for w in _multiples_near(exact_w, factor) for h in _multiples_near(exact_h, factor)
    ]
    return min(
        candidates,
        key=lambda size: (
            round(abs(math.log(size[0] / size[1]) - target_log_ratio), 9),
            abs(size[0] * size[1] - target_area),
            size[0] * size[1],
        ),
    )


def encoded_frame_count(duration_s: float, fps: float) -> int:
    """Frames the MP4 carries, so that it lasts ``duration_s`` to within one frame."""
    if duration_s <= 0 or fps <= 0:
        raise InvalidArgument(f"duration and fps must be positive; got {duration_s} s at {fps} fps")
    return max(1, round(duration_s * fps))


def frame_count(duration_s: int, fps: float, temporal_factor: int) -> int:
    """Frames to generate: the smallest ``temporal_factor*k+1`` covering the clip.

    LTX models only produce ``8k+1`` frames, so 4 s at 24 fps (96 frames) asks
    for 97. The surplus (at most ``temporal_factor`` frames, all at the end) is
    dropped before encoding: the caller keeps the first
    ``encoded_frame_count(duration_s, fps)`` frames, so the file's duration is
    exactly the requested one rather than a fraction of a frame longer.
    """
    if temporal_factor < 1:
        raise InvalidArgument(f"temporal factor must be a positive integer; got {temporal_factor}")
    needed = encoded_frame_count(duration_s, fps)
    return math.ceil((needed - 1) / temporal_factor) * temporal_factor + 1
