"""Aspect ratio to size: multiples of the factor, near the native area, close to the ratio."""

from __future__ import annotations

import pytest

from genserve.vocabulary import IMAGE_ASPECT_RATIOS
from inference_server.geometry import image_size


@pytest.mark.parametrize("ratio", IMAGE_ASPECT_RATIOS)
@pytest.mark.parametrize(("native", "factor"), [(1024, 8), (1024, 64), (128, 8), (512, 16)])
def test_sizes(ratio: str, native: int, factor: int) -> None:
    w, h = image_size(ratio, native, native, factor)
    a, b = (int(x) for x in ratio.split(":"))
    assert w % factor == 0 and h % factor == 0
    assert abs((w / h) / (a / b) - 1) < 0.12
    assert 0.75 < (w * h) / (native * native) < 1.3


def test_sdxl_like_sizes() -> None:
    assert image_size("1:1", 1024, 1024, 8) == (1024, 1024)
    w, h = image_size("16:9", 1024, 1024, 8)
    assert (w, h)[1] == 768 and 1340 <= w <= 1370
