"""Live previews: the latents being denoised, projected to RGB without the VAE.

A linear map from latent channels to RGB is cheap (one small matmul per preview)
and needs no extra weights. Each model family has its table of factors; a family
without one falls back to its first three channels, each normalised to [0, 1].

Latents come in three layouts: images' [B, C, H, W]; FLUX's tokens [B, H/2 x W/2,
4C] (2x2 patches packed), unpacked here; videos' [B, C, F, H, W] (Wan) or tokens
(LTX, unpacked by its pipeline), of which the middle frame is shown.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from PIL import Image

MAX_SIDE = 128
JPEG_QUALITY = 60

PreviewSink = Callable[[int, int, "Preview"], None]  # step, total, preview


@dataclass(frozen=True)
class Preview:
    """One small JPEG of the work in progress."""

    jpeg: bytes
    width: int
    height: int


@runtime_checkable
class Previewing(Protocol):
    """A plan that can send previews: every ``preview_every`` steps (0: never) to its sink."""

    preview_every: int
    preview_sink: PreviewSink | None


@dataclass(frozen=True)
class RgbFactors:
    """``rgb = latents · factors + bias``, in [-1, 1]."""

    factors: tuple[tuple[float, ...], ...]  # [channels][3]
    bias: tuple[float, float, float]


# SDXL's VAE (4 channels): the well-known approximation, fitted on decoded images.
SDXL = RgbFactors(
    factors=(
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    bias=(0.1084, -0.0175, -0.0011),
)


def _interleaved(channels: int) -> RgbFactors:
    """A fixed map for latents without a table of their own: three interleaved channel groups.

    Not a fitted table (none ships with diffusers): each colour averages every third
    channel with alternating signs, which keeps structure visible and is the same on
    every run. A fitted table replaces this without touching the code path.
    """
    rows = []
    for c in range(channels):
        row = [0.0, 0.0, 0.0]
        row[c % 3] = (1.0 if (c // 3) % 2 == 0 else -1.0) * 3.0 / channels
        rows.append(tuple(row))
    return RgbFactors(factors=tuple(rows), bias=(0.0, 0.0, 0.0))


LTX_VIDEO = _interleaved(128)
LATENT_16 = _interleaved(16)
"""SD3's and FLUX's image VAEs and Wan's video VAE: 16 channels each."""

FAMILIES: dict[str, RgbFactors] = {
    "sdxl": SDXL,
    "ltx": LTX_VIDEO,
    "sd3": LATENT_16,
    "flux": LATENT_16,
    "wan": LATENT_16,
}

_PREFIXES = (
    ("StableDiffusionXL", "sdxl"),
    ("StableDiffusion3", "sd3"),
    ("Flux", "flux"),
    ("LTX", "ltx"),
    ("Wan", "wan"),
)


def family_of(pipe: Any) -> str:
    """The preview family of a diffusers pipeline, by class name."""
    name = type(pipe).__name__
    for prefix, family in _PREFIXES:
        if name.startswith(prefix):
            return family
    return "generic"


def unpack_tokens(tokens: torch.Tensor, aspect: tuple[int, int]) -> torch.Tensor:
    """FLUX's packed [B, S, 4C] latents to [B, C, H, W] (each token a 2x2 patch).

    The token grid is the one of ``S`` cells closest to the picture's aspect
    (``width x height``): for FLUX it is exactly ``height/16`` by ``width/16``.
    """
    batch, count, packed = tokens.shape
    width, height = aspect
    rows = min(
        (r for r in range(1, count + 1) if count % r == 0),
        key=lambda r: abs(math.log((count / r) / r) - math.log(width / height)),
    )
    cols = count // rows
    grid = tokens.reshape(batch, rows, cols, packed // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(batch, packed // 4, 2 * rows, 2 * cols)


def latents_to_rgb(latents: torch.Tensor, family: str) -> torch.Tensor:
    """[C, H, W] latents to [H, W, 3] floats in [0, 1]."""
    x = latents.detach().float().cpu()
    table = FAMILIES.get(family)
    if table is not None and len(table.factors) == x.shape[0]:
        factors = torch.tensor(table.factors, dtype=torch.float32)
        bias = torch.tensor(table.bias, dtype=torch.float32)
        rgb = torch.einsum("chw,cr->hwr", x, factors) + bias
        return ((rgb + 1) / 2).clamp(0, 1)
    return _first_channels(x)


def _first_channels(x: torch.Tensor) -> torch.Tensor:
    """The generic fallback: the first three channels (repeated if fewer), normalised."""
    picked = x[:3] if x.shape[0] >= 3 else x[:1].repeat(3, 1, 1)
    low = picked.amin(dim=(1, 2), keepdim=True)
    high = picked.amax(dim=(1, 2), keepdim=True)
    scaled = (picked - low) / (high - low).clamp_min(1e-6)
    return scaled.permute(1, 2, 0)


def encode_preview(rgb: torch.Tensor, aspect: tuple[int, int], max_side: int = MAX_SIDE) -> Preview:
    """[H, W, 3] in [0, 1] to a JPEG of the output's aspect, ``max_side`` on its long side."""
    array = (rgb * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(array, mode="RGB")
    out_w, out_h = aspect
    scale = max_side / max(out_w, out_h)
    size = (max(1, round(out_w * scale)), max(1, round(out_h * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return Preview(jpeg=buf.getvalue(), width=image.width, height=image.height)


def image_preview(
    latents: torch.Tensor, family: str, size: tuple[int, int], decoder: Any = None
) -> Preview:
    """The first image of a [B, C, H, W] batch of latents (or FLUX's [B, S, 4C] tokens).

    With a tiny decoder configured (``preview_decoder``) it decodes the latents, a
    truer picture for a few milliseconds more; otherwise the linear projection.
    """
    if latents.dim() == 3:
        latents = unpack_tokens(latents[:1], size)
    if decoder is not None:
        return encode_preview(decoded_rgb(decoder, latents[:1]), size)
    return encode_preview(latents_to_rgb(latents[0], family), size)


@torch.no_grad()
def decoded_rgb(decoder: Any, latents: torch.Tensor) -> torch.Tensor:
    """[1, C, H, W] latents through an AutoencoderTiny to [H, W, 3] floats in [0, 1]."""
    param = next(decoder.parameters())
    scaled = latents.to(device=param.device, dtype=param.dtype) / decoder.config.scaling_factor
    sample = decoder.decode(scaled).sample[0]
    return (sample.float().cpu() / 2 + 0.5).clamp(0, 1).permute(1, 2, 0)


def video_preview(
    pipe: Any, packed: torch.Tensor, num_frames: int, size: tuple[int, int]
) -> Preview:
    """The middle latent frame of Wan's [B, C, F, H, W] or LTX's packed [B, S, D] latents."""
    width, height = size
    if packed.dim() == 5:
        latents = packed
    else:
        latents = pipe._unpack_latents(
            packed,
            (num_frames - 1) // int(pipe.vae_temporal_compression_ratio) + 1,
            height // int(pipe.vae_spatial_compression_ratio),
            width // int(pipe.vae_spatial_compression_ratio),
            pipe.transformer_spatial_patch_size,
            pipe.transformer_temporal_patch_size,
        )  # [B, C, F, H, W]
    frame = latents[0, :, latents.shape[2] // 2]
    return encode_preview(latents_to_rgb(frame, family_of(pipe)), size)


def due(step: int, every: int, total: int) -> bool:
    """Whether finished step ``step`` (1-based, of ``total``) gets a preview."""
    return every > 0 and 0 < step <= total and step % every == 0
