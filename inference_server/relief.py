"""The built-in ``relief`` image-to-3D model: no weights, a second to run.

It lifts the subject of a picture into a closed, pillow-like solid: the
subject is separated from its background, a height field rises from the
silhouette (round like an inflated cushion, with a little relief from the
image's brightness), and the front surface is closed by a mirrored back and a
thin wall along the silhouette. The picture is the texture of the front. It
gives every server a 3D model that works with no download and no GPU, and its
output is a valid, watertight glTF solid like a learned model's.

Frame: glTF's, +Y up, the front facing +Z; the larger of the silhouette's
width and height is 1 and the bounding box is centred on the origin.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import trimesh
from PIL import Image
from scipy import ndimage

from inference_server.errors import InvalidArgument
from inference_server.progress import StepCallback

MIN_RESOLUTION = 8
MAX_RESOLUTION = 1024
"""Bounds of the working grid's longer side, in vertices."""

TEXTURE_MAX_SIDE = 1024
"""Longer side of the texture written into the mesh; larger inputs shrink."""

_BULGE = 0.5
"""Height of the cushion relative to a sphere of the same silhouette."""

_RIM = 0.01
"""Half-thickness of the wall along the silhouette (the object's size is 1).

A wall of zero height would put front and back vertices in the same place;
loaders that merge coincident vertices would then join the two surfaces into
edges shared by four triangles, and the solid would no longer be closed.
"""

_SMOOTHING = 2.0
"""Gaussian smoothing of the height field, in grid cells."""

_RIM_SMOOTHING_PASSES = 3
"""Passes of smoothing along the silhouette (see ``_smooth_rim``)."""

_LUMINANCE_RELIEF = 0.25
"""How far brightness raises (or darkness lowers) the front, as a fraction."""

_MIN_SUBJECT_SHARE = 0.002
"""Masks smaller than this share of the image are noise, not a subject."""

_ALPHA_THRESHOLD = 0.5
_MIN_COLOUR_DISTANCE = 0.1
"""Colour distance (RGB in 0..1) under which a pixel is always background."""

_STAGES = 3


def build_relief_mesh(
    image: Image.Image,
    *,
    resolution: int = 128,
    on_step: StepCallback | None = None,
) -> trimesh.Trimesh:
    """Build the textured, watertight relief solid of ``image``.

    ``resolution`` is the longer side of the working grid in vertices; the
    mesh has about ``4 * resolution²`` triangles at most. ``on_step`` hears
    ``(1..3, 3, "denoising")`` after segmenting, the height field and meshing.
    """
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise InvalidArgument(
            f"resolution must be between {MIN_RESOLUTION} and {MAX_RESOLUTION}, not {resolution}"
        )
    rgba = _working_copy(image, resolution)
    mask = _segment(rgba)
    cells = _cells(mask)
    _report(on_step, 1)

    front, back, used = _height_field(cells, rgba)
    _report(on_step, 2)

    mesh = _close_solid(cells, front, back, used, texture_image(image))
    _report(on_step, 3)
    return mesh


def subject_box(image: Image.Image, *, resolution: int = 128) -> tuple[float, float, float, float]:
    """The subject's bounding box as ``(left, top, right, bottom)`` in 0..1.

    Found the way the relief model finds its subject (alpha, or else the
    colour of the border), so that other models can crop an input picture to
    what they will show. The whole picture when no subject stands out.
    """
    return _box(_segment(_working_copy(image, resolution)))


def subject_cutout(image: Image.Image, *, resolution: int = 128) -> Image.Image:
    """The picture cropped to ``subject_box``, its background made transparent.

    Textures projected from it carry no background colour into the mesh:
    ``texture_image`` fills the transparent part from the nearest subject
    pixels.
    """
    subject = _segment(_working_copy(image, resolution))
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


def _report(on_step: StepCallback | None, step: int) -> None:
    if on_step is not None:
        on_step(step, _STAGES, "denoising")


def _working_copy(image: Image.Image, resolution: int) -> npt.NDArray[np.float32]:
    """RGBA in 0..1, shrunk so that its longer side is ``resolution``."""
    rgba = image.convert("RGBA")
    scale = resolution / max(rgba.size)
    size = (max(2, round(rgba.width * scale)), max(2, round(rgba.height * scale)))
    if size != rgba.size:
        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        rgba = rgba.resize(size, resample)
    return np.asarray(rgba, dtype=np.float32) / 255.0


def _segment(rgba: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """The subject's pixels: one solid, hole-free region.

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
    mask = _largest_region(mask)
    if mask.sum() < max(16, _MIN_SUBJECT_SHARE * mask.size):
        return np.ones_like(mask)
    return mask


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


def _largest_region(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    result: npt.NDArray[np.bool_] = labels == int(np.argmax(sizes))
    return result


def _cells(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The grid squares (between four pixel centres) the front surface covers.

    A square is covered when all four of its pixels are subject. Two squares
    that touch only at a corner would make that corner a pinch where the
    solid is not a manifold, so the gap beside them is filled; then only the
    largest edge-connected region stays, and if none does, every square.
    """
    cells = mask[:-1, :-1] & mask[:-1, 1:] & mask[1:, :-1] & mask[1:, 1:]
    while True:
        a, b = cells[:-1, :-1], cells[:-1, 1:]
        c, d = cells[1:, :-1], cells[1:, 1:]
        falling = a & d & ~b & ~c
        rising = b & c & ~a & ~d
        if not (falling.any() or rising.any()):
            break
        cells[:-1, 1:] |= falling
        cells[:-1, :-1] |= rising
    cells = _largest_region(cells)
    if not cells.any():
        cells = np.ones_like(cells)
    return cells


def _height_field(
    cells: npt.NDArray[np.bool_], rgba: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Heights of each grid vertex above the rim, in grid units.

    Returns the front's heights, the back's and the vertices the surface
    uses; both are 0 on the silhouette. The height follows the distance ``d``
    to the rim as a sphere would, ``sqrt(d * (2 * dmax - d))``, flattened by
    ``_BULGE``, so the surface meets the rim steeply and rounds over the
    middle. On the front, brighter parts of the picture stand a little higher.
    """
    padded = np.pad(cells, 1)
    around = np.stack([padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]])
    used: npt.NDArray[np.bool_] = np.asarray(around.any(axis=0), dtype=bool)
    inner = around.all(axis=0)
    distance = np.asarray(ndimage.distance_transform_edt(inner), dtype=np.float64)
    deepest = max(float(distance.max()), 1.0)
    dome = _BULGE * np.sqrt(distance * (2.0 * deepest - distance))
    # The distance transform creases along the silhouette's medial axis and
    # steps with the pixel grid; smoothing irons both out.
    dome = ndimage.gaussian_filter(dome, sigma=_SMOOTHING)

    rgb = rgba[..., :3].astype(np.float64)
    luminance = ndimage.gaussian_filter(rgb @ np.array([0.299, 0.587, 0.114]), sigma=1.0)
    deviation = luminance - float(luminance[used].mean())
    relief = 1.0 + _LUMINANCE_RELIEF * np.clip(deviation / 0.5, -1.0, 1.0)
    front: npt.NDArray[np.float64] = np.where(inner, dome * relief, 0.0)
    back: npt.NDArray[np.float64] = np.where(inner, dome, 0.0)
    return front, back, used


def _close_solid(
    cells: npt.NDArray[np.bool_],
    front_height: npt.NDArray[np.float64],
    back_height: npt.NDArray[np.float64],
    used: npt.NDArray[np.bool_],
    texture: Image.Image,
) -> trimesh.Trimesh:
    """Front over the covered squares, a mirrored back, a wall along the rim.

    Front and back have their own vertices; each boundary edge of the front
    gets a quad to the matching back edge. Every edge then borders exactly two
    triangles with opposite directions, which is what makes the result a
    closed, consistently wound volume.
    """
    rows, columns = used.shape
    index = np.full(used.shape, -1, dtype=np.int64)
    count = int(used.sum())
    index[used] = np.arange(count)
    i, j = np.nonzero(used)

    ci, cj = np.nonzero(cells)
    v00, v01 = index[ci, cj], index[ci, cj + 1]
    v10, v11 = index[ci + 1, cj], index[ci + 1, cj + 1]
    # Counter-clockwise seen from +Z, with x to the right and y up.
    front = np.concatenate([np.stack([v10, v11, v01], 1), np.stack([v10, v01, v00], 1)])
    back = front[:, [0, 2, 1]] + count

    edges = front[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    keys = edges[:, 0] * count + edges[:, 1]
    reverse = edges[:, 1] * count + edges[:, 0]
    a, b = edges[~np.isin(keys, reverse)].T
    wall = np.concatenate([np.stack([b, a, a + count], 1), np.stack([b, a + count, b + count], 1)])

    row, column = _smooth_rim(i.astype(np.float64), j.astype(np.float64), a, b)
    top, bottom = float(row.min()), float(row.max())
    left, right = float(column.min()), float(column.max())
    scale = 1.0 / max(bottom - top, right - left, 1.0)
    x = (column - (left + right) / 2.0) * scale
    y = -(row - (top + bottom) / 2.0) * scale
    front_z = _RIM + front_height[i, j] * scale
    back_z = -(_RIM + back_height[i, j] * scale)
    vertices = np.concatenate([np.stack([x, y, front_z], axis=1), np.stack([x, y, back_z], axis=1)])
    uv_one = np.stack([(column + 0.5) / columns, 1.0 - (row + 0.5) / rows], axis=1)
    uv = np.concatenate([uv_one, uv_one])

    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=1.0
    )
    visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return trimesh.Trimesh(
        vertices=vertices,
        faces=np.concatenate([front, back, wall]),
        visual=visual,
        process=False,
    )


def _smooth_rim(
    row: npt.NDArray[np.float64],
    column: npt.NDArray[np.float64],
    start: npt.NDArray[np.int64],
    end: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Round off the pixel staircase of the silhouette.

    Each rim vertex (one boundary edge leaves it, as the silhouette has no
    pinches) moves towards its two neighbours along the rim, a few times.
    The moves stay under a pixel, so no triangle folds over.
    """
    # Vertices off the rim are their own neighbours, so they stay put.
    following = np.arange(len(row))
    preceding = np.arange(len(row))
    following[start] = end
    preceding[end] = start
    for _ in range(_RIM_SMOOTHING_PASSES):
        row = (row[preceding] + 2.0 * row + row[following]) / 4.0
        column = (column[preceding] + 2.0 * column + column[following]) / 4.0
    return row, column


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
