"""The REST bridge's overhead, and image encoding against Pillow's defaults.

Overhead: the same request (model, size, steps) timed as a full REST round trip
(bridge -> gRPC -> pipeline -> encode -> store -> JSON) and as a direct
in-process pipeline call, interleaved so both see the same machine load.
Run: ``python -m bench.bench_bridge [--requests 40] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sqlmodel import Session

from bench.stats import percentile, summary_ms
from inference_server.encoders.images import ENCODE_OPTIONS, encode_image
from inference_server.loader import load_pipeline
from inference_server.model_config import ModelSpec
from inference_server.pipelines.image import ImageRun, run_image
from storage.accounts import create_account, create_api_key
from storage.db import make_engine, migrate
from tests.utils.procs import start_bridge, start_inference

SECRET = "bench-secret-" + "y" * 40


def _models_file(folder: Path, device: str, steps: int) -> Path:
    path = folder / "models.toml"
    path.write_text(
        "[models.nano-banana]\n"
        'kind = "image"\nsource = "builtin:tiny-sdxl"\n'
        f'device = "{device}"\nsteps = {steps}\nwidth = 128\nheight = 128\n'
    )
    return path


def bridge_overhead(requests: int, device: str, steps: int, cache: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models = _models_file(tmp, device, steps)
        inf, port, _ = start_inference(cache, tmp, models_file=models)
        db_url = f"sqlite:///{tmp / 'bench.db'}"
        env = {
            "GENSERVE_DATA_DIR": str(tmp / "data"),
            "DATABASE_URL": db_url,
            "GENSERVE_INFERENCE_TARGETS": f"127.0.0.1:{port}",
            "GENSERVE_KEY_SECRET": SECRET,
            "GENSERVE_MODELS_FILE": str(models),
        }
        bridge, base = start_bridge(env, tmp)
        try:
            engine = make_engine(db_url)
            migrate(engine)
            with Session(engine, expire_on_commit=False) as s:
                account = create_account(s, email=None, points=10**9)
                assert account.id is not None
                key = create_api_key(
                    s, account_id=account.id, secret=SECRET.encode(), name="bench"
                ).plaintext
            spec = ModelSpec(
                name="nano-banana", kind="image", source="builtin:tiny-sdxl", device=device,
                steps=steps, width=128, height=128,
            )  # fmt: skip
            pipe = load_pipeline(spec, cache)
            run = ImageRun("a lighthouse at dawn", "", 128, 128, 1, steps, 5.0, 1)
            body = {"prompt": "a lighthouse at dawn", "aspect_ratio": "1:1", "output_format": "png"}
            rest: list[float] = []
            direct: list[float] = []
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
                for i in range(requests + 3):
                    t0 = time.perf_counter()
                    r = c.post("/api/v1/images", json=body, timeout=120)
                    t1 = time.perf_counter()
                    r.raise_for_status()
                    t2 = time.perf_counter()
                    run_image(pipe, run, lambda *_: None)
                    t3 = time.perf_counter()
                    if i >= 3:  # warm-up excluded
                        rest.append(t1 - t0)
                        direct.append(t3 - t2)
            print(f"REST round trip      {summary_ms(rest)}")
            print(f"direct pipeline call {summary_ms(direct)}")
            diffs = [a - b for a, b in zip(rest, direct, strict=True)]
            p50 = (percentile(rest, 0.5) - percentile(direct, 0.5)) * 1000
            p95 = (percentile(rest, 0.95) - percentile(direct, 0.95)) * 1000
            pairwise = percentile(diffs, 0.5) * 1000
            print(
                f"bridge overhead      p50 {p50:8.1f} ms  p95 {p95:8.1f} ms"
                f"  (pairwise p50 {pairwise:.1f} ms)"
            )
        finally:
            bridge.stop()
            inf.stop()


def test_image(size: int = 1024) -> Image.Image:
    """A photo-like picture: smooth gradients, shapes and fine noise (encoders hate pure noise)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rng = np.random.default_rng(0)
    r = 255 * (0.5 + 0.5 * np.sin(6 * x + 3 * y))
    g = 255 * (0.5 + 0.5 * np.cos(4 * y - 2 * x))
    b = 255 * ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def encode_times(repeats: int = 5) -> None:
    image = test_image()
    print(f"\nencode 1024x1024 ({repeats} runs, median)   ours: options            Pillow default")
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
        ours_ms, default_ms = percentile(ours, 0.5) * 1000, percentile(default, 0.5) * 1000
        options = str(ENCODE_OPTIONS[fmt])
        print(
            f"  {fmt:5s} {ours_ms:7.1f} ms {size_ours / 1024:7.0f} KiB {options:32s}"
            f" {default_ms:7.1f} ms {size_default / 1024:7.0f} KiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cache", type=Path, default=Path("data/test-models"))
    args = parser.parse_args()
    bridge_overhead(args.requests, args.device, args.steps, args.cache)
    encode_times()


if __name__ == "__main__":
    main()
