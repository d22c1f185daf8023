"""Time the video path: generation, VAE decode and MP4 encode per resolution.

Uses the tiny random-weight LTX models, so the numbers measure the pipeline's
fixed costs (attention over the latent grid, VAE decode at full size, x264)
rather than a real model's quality. A clip's figure is the whole wait; its note
splits it: generate (text encode and denoise), decode (VAE and conversion to uint8)
and encode (libx264 veryfast, crf 20). Run:

    python -m bench.bench_video [--device cuda] [--steps 2] [--model ltx-video] [--repeat 3]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline

from bench.rows import Row, report
from inference_server.encoders.video import encode_mp4
from inference_server.pipelines.video import run_video
from inference_server.tiny import ltx2, ltx_video
from inference_server.video_geometry import encoded_frame_count, frame_count, video_size

BUILDERS: dict[str, Callable[[pathlib.Path], None]] = {
    "ltx-video": ltx_video.build,
    "ltx2": ltx2.build,
}
RESOLUTIONS = ("360p", "520p", "720p", "1080p")


@dataclass
class Clip:
    """One clip's stages, in seconds."""

    label: str
    size: str
    frames: int
    generate: float | None
    decode: float | None
    encode: float
    mp4_bytes: int


class StageClock:
    """A step callback that notes when denoising ends and decoding finishes."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.start = time.perf_counter()
        self.decode_start = self.start
        self.decode_end = self.start

    def __call__(self, step: int, total: int, stage: str) -> None:
        if stage == "decoding" and step == 0:
            synchronize(self.device)
            self.decode_start = time.perf_counter()
        elif stage == "decoding":
            self.decode_end = time.perf_counter()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def moving_gradient(frames: int, height: int, width: int) -> np.ndarray:
    """Smooth colour ramps drifting across the frame: easy to compress, like real footage."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        phase = t / frames
        video[t, ..., 0] = (127.5 + 127.5 * np.sin(x / width * 6.28 + phase * 6.28)).astype(
            np.uint8
        )
        video[t, ..., 1] = (127.5 + 127.5 * np.sin(y / height * 6.28 - phase * 3.14)).astype(
            np.uint8
        )
        video[t, ..., 2] = ((x + y) / (width + height) * 255 * (0.5 + 0.5 * phase)).astype(np.uint8)
    return video


def median_clip(rows: list[Clip]) -> Clip:
    """Each column's median over repeats: one slow run on a shared machine moves nothing."""
    first = rows[0]

    def mid(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    return Clip(
        label=first.label,
        size=first.size,
        frames=first.frames,
        generate=mid([r.generate for r in rows]),
        decode=mid([r.decode for r in rows]),
        encode=statistics.median(r.encode for r in rows),
        mp4_bytes=first.mp4_bytes,
    )


def bench_model(
    pipe: DiffusionPipeline,
    device: str,
    steps: int,
    duration: int,
    fps: float,
    repeat: int = 1,
    resolutions: tuple[str, ...] = RESOLUTIONS,
) -> list[Clip]:
    rows = []
    for resolution in resolutions:
        rows.append(
            median_clip(
                [bench_clip(pipe, device, steps, duration, fps, resolution) for _ in range(repeat)]
            )
        )
        print(f"[video] done {resolution}", file=sys.stderr, flush=True)
    return rows


def bench_clip(
    pipe: DiffusionPipeline, device: str, steps: int, duration: int, fps: float, resolution: str
) -> Clip:
    """One 16:9 clip: generation, decode and encode timed separately."""
    width, height = video_size(resolution, "16:9", 32)
    frames = frame_count(duration, fps, 8)
    clock = StageClock(device)
    synchronize(device)
    clock.start = time.perf_counter()
    result = run_video(
        pipe,
        prompt="A spaceship flying through a colorful nebula with stars in background",
        negative_prompt="",
        width=width,
        height=height,
        num_frames=frames,
        frame_rate=fps,
        steps=steps,
        guidance=3.0,
        seed=0,
        on_step=clock,
    )
    keep = encoded_frame_count(duration, fps)
    started = time.perf_counter()
    data = encode_mp4(result.frames[:keep], fps, result.audio, result.sample_rate)
    encode = time.perf_counter() - started
    return Clip(
        label=resolution,
        size=f"{width}x{height}",
        frames=frames,
        generate=clock.decode_start - clock.start,
        decode=clock.decode_end - clock.decode_start,
        encode=encode,
        mp4_bytes=len(data),
    )


def bench_encode_only(duration: int, fps: float) -> Clip:
    frames = moving_gradient(encoded_frame_count(duration, fps), 720, 1280)
    started = time.perf_counter()
    data = encode_mp4(frames, fps)
    return Clip(
        label="x264 only, a moving gradient",
        size="1280x720",
        frames=frames.shape[0],
        generate=None,
        decode=None,
        encode=time.perf_counter() - started,
        mp4_bytes=len(data),
    )


def video_rows(section: str, rows: list[Clip]) -> list[Row]:
    """A row per clip: the whole wait (generate + decode + encode), each stage in the note."""
    out = []
    for clip in rows:
        stages = [("generate", clip.generate), ("decode", clip.decode), ("encode", clip.encode)]
        known = [(name, value) for name, value in stages if value is not None]
        note = ", ".join(f"{name} {value:.2f} s" for name, value in known)
        out.append(
            Row(section, f"{clip.label} {clip.size}, {clip.frames} frames",
                sum(value for _, value in known), "s", f"{note}; {clip.mp4_bytes / 1024:.0f} KiB")
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps (at least 2)")
    parser.add_argument("--model", choices=sorted(BUILDERS), default="ltx-video")
    parser.add_argument("--duration", type=int, default=4, help="clip length in seconds")
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per clip; the median is shown")
    parser.add_argument("--rows", action="store_true", help="rows as JSON lines (bench.run_all)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 360p, 1 s")
    args = parser.parse_args()
    if args.quick:
        args.duration = 1

    with tempfile.TemporaryDirectory(prefix="genserve-bench-") as folder:
        BUILDERS[args.model](pathlib.Path(folder))
        pipe = DiffusionPipeline.from_pretrained(folder).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    # The first call pays one-off costs (kernel selection, allocator growth).
    run_video(
        pipe,
        prompt="warm up",
        negative_prompt="",
        width=64,
        height=64,
        num_frames=9,
        frame_rate=args.fps,
        steps=2,
        guidance=3.0,
        seed=0,
        on_step=StageClock(),
    )
    resolutions = RESOLUTIONS[:1] if args.quick else RESOLUTIONS
    clips = bench_model(
        pipe, args.device, args.steps, args.duration, args.fps, args.repeat, resolutions
    )
    clips.append(
        median_clip([bench_encode_only(args.duration, args.fps) for _ in range(args.repeat)])
    )
    section = (
        f"video · {args.device} · tiny {args.model}, {args.steps} steps, {args.duration} s at"
        f" {args.fps:g} fps, {torch.get_num_threads()} threads, median of {args.repeat}"
    )
    report(video_rows(section, clips), args.rows, "video")


if __name__ == "__main__":
    main()
