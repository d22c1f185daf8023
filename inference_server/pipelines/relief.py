"""The built-in ``relief`` image-to-3D model: no weights, a second to run.

It lifts the subject of a picture into a closed, pillow-like solid: the
subject is separated from its background (``segmentation``), a height field rises from the
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
from inference_server.segmentation import largest_region, subject_mask, texture_image, working_copy

MIN_RESOLUTION = 8
MAX_RESOLUTION = 1024
"""Bounds of the working grid's longer side, in vertices."""

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
    rgba = working_copy(image, resolution)
    mask = subject_mask(rgba)
    cells = _cells(mask)
    _report(on_step, 1)

    front, back, used = _height_field(cells, rgba)
    _report(on_step, 2)

    mesh = _close_solid(cells, front, back, used, texture_image(image))
    _report(on_step, 3)
    return mesh


def _report(on_step: StepCallback | None, step: int) -> None:
    if on_step is not None:
        on_step(step, _STAGES, "denoising")


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
    cells = largest_region(cells)
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
