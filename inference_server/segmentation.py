"""Finding the subject of a picture: its mask, box and cutout, and a texture of it.

The relief model lifts the subject into a solid, Shap-E is shown it framed
alone, and the mesh encoders project it onto a surface and turn a mesh to
match its proportions. All of them must agree on what the subject is, so it
is found in one place, with numpy and scipy only: alpha when the picture has
some, or else the colour of its border.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

TEXTURE_MAX_SIDE = 1024
"""Longer side of a texture made from a picture; larger inputs shrink."""

_MIN_SUBJECT_SHARE = 0.002
"""Masks smaller than this share of the image are noise, not a subject."""

_ALPHA_THRESHOLD = 0.5
_MIN_COLOUR_DISTANCE = 0.1
"""Colour distance (RGB in 0..1) under which a pixel is always background."""


def working_copy(image: Image.Image, resolution: int) -> npt.NDArray[np.float32]:
    """RGBA in 0..1, shrunk so that its longer side is ``resolution``."""
    rgba = image.convert("RGBA")
    scale = resolution / max(rgba.size)
    size = (max(2, round(rgba.width * scale)), max(2, round(rgba.height * scale)))
    if size != rgba.size:
        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        rgba = rgba.resize(size, resample)
    return np.asarray(rgba, dtype=np.float32) / 255.0


def subject_mask(rgba: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """The subject's pixels of a ``working_copy``: one solid, hole-free region.

    Alpha decides when some pixels are transparent and some opaque. Otherwise
    the background is taken to be the border's median colour, and a pixel
    belongs to the subject when its colour is further from it than a
    threshold that Otsu's method picks from the distances themselves (never
    below what the border's own spread would allow). Only the largest region
    is kept, with its holes filled; the whole picture when nothing is left.
    """
    alpha = rgba[..., 3]
    opaque = alpha >= _ALPHA_THRESHOLD
    if 0 < opaque.sum() < opaque.size and (alpha < _ALPHA_THRESHOLD).mean() > _MIN_SUBJECT_SHARE:
        mask = opaque
    else:
        rgb = rgba[..., :3]
        border = np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]])
        background = np.median(border, axis=0)
        distance = np.linalg.norm(rgb - background, axis=-1)
        border_spread = float(np.percentile(np.linalg.norm(border - background, axis=-1), 95))
        threshold = max(_otsu(distance), border_spread, _MIN_COLOUR_DISTANCE)
        mask = distance > threshold
        mask = ndimage.binary_opening(mask)
    mask = ndimage.binary_fill_holes(mask)
    mask = largest_region(mask)
    if mask.sum() < max(16, _MIN_SUBJECT_SHARE * mask.size):
        return np.ones_like(mask)
    return mask


def subject_box(image: Image.Image, *, resolution: int = 128) -> tuple[float, float, float, float]:
    """The subject's bounding box as ``(left, top, right, bottom)`` in 0..1.

    Lets a model or an encoder crop an input picture to what it will show.
    The whole picture when no subject stands out.
    """
    return _box(subject_mask(working_copy(image, resolution)))


def subject_cutout(image: Image.Image, *, resolution: int = 128) -> Image.Image:
    """The picture cropped to ``subject_box``, its background made transparent.

    Textures projected from it carry no background colour into the mesh:
    ``texture_image`` fills the transparent part from the nearest subject
    pixels.
    """
    subject = subject_mask(working_copy(image, resolution))
    mask = Image.fromarray(subject.astype(np.uint8) * 255).resize(
        image.size, Image.Resampling.BILINEAR
    )
    cutout = image.convert("RGBA")
    alpha = np.minimum(np.asarray(cutout)[..., 3], np.asarray(mask))
    cutout.putalpha(Image.fromarray(np.ascontiguousarray(alpha)))
    left, top, right, bottom = _box(subject)
    return cutout.crop(
        (
            round(left * image.width),
            round(top * image.height),
            max(round(right * image.width), round(left * image.width) + 1),
            max(round(bottom * image.height), round(top * image.height) + 1),
        )
    )


def texture_image(image: Image.Image) -> Image.Image:
    """The picture as an RGB texture no larger than ``TEXTURE_MAX_SIDE``.

    Transparent pixels take the colour of the nearest opaque one, so that
    filtering along the silhouette never blends in whatever colour hides
    behind the transparency (often black).
    """
    rgba = image.convert("RGBA")
    if max(rgba.size) > TEXTURE_MAX_SIDE:
        rgba.thumbnail((TEXTURE_MAX_SIDE, TEXTURE_MAX_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(rgba)
    transparent = pixels[..., 3] < 128
    if transparent.any() and not transparent.all():
        _, (near_i, near_j) = ndimage.distance_transform_edt(transparent, return_indices=True)
        return Image.fromarray(np.ascontiguousarray(pixels[near_i, near_j, :3]))
    return rgba.convert("RGB")


def largest_region(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The largest edge-connected region of ``mask`` (all of it when it has one or none)."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    result: npt.NDArray[np.bool_] = labels == int(np.argmax(sizes))
    return result


def _box(mask: npt.NDArray[np.bool_]) -> tuple[float, float, float, float]:
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return (
        float(columns[0]) / width,
        float(rows[0]) / height,
        float(columns[-1] + 1) / width,
        float(rows[-1] + 1) / height,
    )


def _otsu(values: npt.NDArray[np.float32]) -> float:
    """Otsu's threshold: the cut that best separates two classes of values."""
    top = float(values.max())
    if top <= 0:
        return 0.0
    counts, edges = np.histogram(values, bins=256, range=(0.0, top))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])
