"""Image encoding: our encoder options against Pillow's defaults, on a photo-like picture.

Every generated image is encoded once by the inference server (PNG, JPEG or WebP,
with ``ENCODE_OPTIONS``), so these milliseconds are part of every image's latency.
(The bridge's own overhead is measured by ``bench.bench_serving``.)
Run: ``python -m bench.bench_encode [--repeats 5] [--rows]``.
"""

from __future__ import annotations

import argparse
import io
import time
import zlib

import numpy as np
from PIL import Image

from bench.rows import Row, report
from bench.stats import percentile
from inference_server.encoders.images import ENCODE_OPTIONS, encode_image


def test_image(size: int = 1024) -> Image.Image:
    """A photo-like picture: smooth gradients, shapes and fine noise (encoders hate pure noise)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rng = np.random.default_rng(0)
    r = 255 * (0.5 + 0.5 * np.sin(6 * x + 3 * y))
    g = 255 * (0.5 + 0.5 * np.cos(4 * y - 2 * x))
    b = 255 * ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _named(option: str, value: object) -> object:
    """zlib's strategy by its name (``Z_RLE``) rather than its number."""
    if option != "compress_type":
        return value
    names = {getattr(zlib, n): n for n in ("Z_FILTERED", "Z_HUFFMAN_ONLY", "Z_RLE", "Z_FIXED")}
    return names.get(value, value)


def encode_times(repeats: int, size: int = 1024) -> list[Row]:
    """Each format's median time and size, ours and Pillow's default, interleaved."""
    image = test_image(size)
    section = f"encoding · {size}x{size} photo-like image, median of {repeats}"
    rows = []
    for fmt in ("png", "jpeg", "webp"):
        ours, default = [], []
        size_ours = size_default = 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            data = encode_image(image, fmt)
            t1 = time.perf_counter()
            buf = io.BytesIO()
            image.save(buf, format=fmt.upper())
            t2 = time.perf_counter()
            ours.append(t1 - t0)
            default.append(t2 - t1)
            size_ours, size_default = len(data), len(buf.getvalue())
        options = ", ".join(f"{k} {_named(k, v)}" for k, v in ENCODE_OPTIONS[fmt].items())
        pillow_ms = percentile(default, 0.5) * 1000
        note = (
            f"{size_ours / 1024:.0f} KiB; Pillow's default {pillow_ms:.1f} ms,"
            f" {size_default / 1024:.0f} KiB"
        )
        rows.append(Row(section, f"{fmt} ({options})", percentile(ours, 0.5) * 1000, "ms", note))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", action="store_true", help="rows as JSON lines (bench.run_all)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: once, at 256x256")
    args = parser.parse_args()
    rows = encode_times(1, 256) if args.quick else encode_times(args.repeats)
    report(rows, args.rows, "encoding")


if __name__ == "__main__":
    main()
