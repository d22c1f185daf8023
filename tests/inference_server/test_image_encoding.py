"""Image encoding: fast PNG that stays lossless, and the run-length strategy really used."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from inference_server.encoders.images import encode_image


def _graphic() -> Image.Image:
    """Flat colours in rectangles: where zlib's run-length strategy shows."""
    image = Image.new("RGB", (512, 512), (240, 240, 235))
    draw = ImageDraw.Draw(image)
    for i in range(12):
        draw.rectangle((i * 30, i * 25, i * 30 + 200, i * 25 + 150), fill=(i * 20, 100, 200 - i))
    return image


def test_png_is_lossless_and_run_length_coded() -> None:
    image = _graphic()
    data = encode_image(image, "png")
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "PNG"
        assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(image))
    plain = io.BytesIO()
    image.save(plain, format="PNG", compress_level=1)  # the same level, zlib's default strategy
    assert len(data) < len(plain.getvalue()) / 2, (len(data), len(plain.getvalue()))


def test_every_format_decodes_at_its_size() -> None:
    image = _graphic()
    for fmt, name in (("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")):
        with Image.open(io.BytesIO(encode_image(image, fmt))) as decoded:
            assert decoded.format == name and decoded.size == image.size
