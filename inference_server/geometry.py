"""Aspect ratio to pixel size: multiples of the model's factor, near its native area.

The plan has accepted the ratio (``plans/image.py``); nothing here checks it again.
"""

from __future__ import annotations

import math

from genserve.vocabulary import ratio_parts


def size_for_ratio(ratio: float, native_pixels: int, factor: int) -> tuple[int, int]:
    """The (width, height) nearest ``ratio`` whose area is near ``native_pixels``.

    Both sides are multiples of ``factor``; among the candidates around the ideal
    size the one with the smallest relative ratio error wins, area error breaking ties.
    """
    ideal_h = math.sqrt(native_pixels / ratio)
    ideal_w = ideal_h * ratio
    best: tuple[float, float, int, int] | None = None
    for w in _around(ideal_w, factor):
        for h in _around(ideal_h, factor):
            ratio_err = abs(math.log((w / h) / ratio))
            area_err = abs(math.log((w * h) / native_pixels))
            key = (round(ratio_err, 3) + area_err * 0.25, area_err, w, h)
            if best is None or key < best:
                best = key
    assert best is not None
    return best[2], best[3]


def _around(value: float, factor: int) -> list[int]:
    base = max(1, math.floor(value / factor))
    return [f * factor for f in (base - 1, base, base + 1, base + 2) if f >= 1]


def image_size(
    aspect_ratio: str, native_width: int, native_height: int, factor: int
) -> tuple[int, int]:
    w, h = ratio_parts(aspect_ratio)
    return size_for_ratio(w / h, native_width * native_height, factor)
