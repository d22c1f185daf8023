"""Turns a generated mesh into what the 3D endpoint returns.

``dress_mesh`` carries out the request's ``texture_quality``,
``texture_alignment`` and ``orientation``; ``export_glb`` writes the glTF 2.0
binary; ``render_preview`` draws the still image that goes beside it. The
preview is rasterised here in numpy, because an OpenGL context is rarely
available on an inference host.

Colour conventions follow glTF: texture images are sRGB, vertex colours are
linear (``COLOR_0``), so the preview converts vertex colours to sRGB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import trimesh
from PIL import Image

from genserve import vocabulary as vocab
from inference_server.errors import InvalidArgument
from inference_server.segmentation import subject_box, subject_cutout, texture_image

PREVIEW_YAW_DEGREES = 30.0
PREVIEW_PITCH_DEGREES = 20.0
"""The preview's three-quarter view: turned right of the front, from above."""

_FIELD_OF_VIEW_DEGREES = 30.0
_AMBIENT = 0.35
_LIGHT = np.array([-0.4, 0.7, 1.0]) / np.linalg.norm([-0.4, 0.7, 1.0])
"""Light from the upper left, behind the camera, in camera coordinates."""

_GREY = np.array([0.72, 0.72, 0.72])
_YAW_CANDIDATES = np.deg2rad(np.arange(0.0, 360.0, 5.0))
_TURN_PENALTY = 0.02
"""Cost per radian of turning away from the model's own front (tie-breaker)."""

_KEEP_TOLERANCE = 0.1
"""The model's own front stays unless a turn matches the picture's aspect
ratio better by more than this (in log ratio, about 10 %)."""

_MAX_FRAGMENTS_PER_BATCH = 1 << 21


def dress_mesh(
    mesh: trimesh.Trimesh,
    image: Image.Image,
    *,
    texture_quality: vocab.TextureQuality,
    texture_alignment: vocab.TextureAlignment,
    orientation: vocab.Orientation,
) -> trimesh.Trimesh:
    """A copy of ``mesh`` dressed as the request asks.

    - ``texture_quality="no"``: geometry only, no texture and no colours.
    - ``"standard"`` with ``texture_alignment="original_image"``: the input
      picture, cropped to its subject, is projected along the view axis (Z)
      onto the mesh's X/Y extent and becomes its base-colour texture.
    - ``"standard"`` with ``"geometry"``: the model's own colours are kept
      (the relief's UV texture, Shap-E's vertex colours: every model colours
      its own surface).
    - ``orientation="align_image"`` turns the mesh about its vertical axis so
      that its silhouette's width-to-height ratio matches the subject's in the
      picture: an estimate of the camera's direction that keeps the model's
      up axis and, of equally good turns, the one nearest the model's own
      front. A relief already faces its camera and stays as it is.
      ``"default"`` keeps the model's frame (+Y up, front to +Z).

    The options were accepted by the plan (``plans/mesh.py``), which is where they are
    checked.
    """
    result = mesh.copy()
    if orientation == "align_image":
        result.apply_transform(_facing_camera(result, image))
    if texture_quality == "no":
        result.visual = trimesh.visual.ColorVisuals()
    elif texture_alignment == "original_image":
        result.visual = _projected_texture(result, image)
    return result


def export_glb(mesh: trimesh.Trimesh) -> bytes:
    """The mesh as a binary glTF 2.0 file (``model/gltf-binary``)."""
    data = mesh.export(file_type="glb")
    if not isinstance(data, bytes):
        raise TypeError(f"trimesh returned {type(data).__name__} for a GLB export")
    return data


def render_preview(
    mesh: trimesh.Trimesh,
    size: int = 512,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """A shaded three-quarter view of the mesh, ``size`` pixels square.

    Perspective camera 30° to the right of the front and 20° above it, the
    mesh filling most of the frame; z-buffered, Lambert plus ambient light
    on smooth normals (both sides lit, so open meshes show their inside).
    Colour comes from the texture, the vertex colours, or a plain grey.
    """
    if size < 1:
        raise InvalidArgument(f"size must be positive, not {size}")
    canvas = np.empty((size * size, 3), dtype=np.float64)
    canvas[:] = np.asarray(background, dtype=np.float64) / 255.0
    if len(mesh.faces) == 0:
        return _to_image(canvas, size)
    camera = _Camera.three_quarter(mesh, size)
    screen, depth = camera.project(np.asarray(mesh.vertices, dtype=np.float64))
    hits = _rasterise(screen, depth, np.asarray(mesh.faces, dtype=np.int64), size)
    if hits.face.size == 0:
        return _to_image(canvas, size)

    faces = np.asarray(mesh.faces, dtype=np.int64)[hits.face]
    normals = camera.rotate(np.asarray(mesh.vertex_normals, dtype=np.float64))
    normal = np.einsum("fk,fkc->fc", hits.weights, normals[faces])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    # Points seen from camera space: the view direction is from the point to
    # the eye; a normal facing away is flipped so both sides are lit alike.
    to_eye = -camera.view_points(hits, faces, screen, depth)
    facing = np.einsum("fc,fc->f", normal, to_eye)
    normal[facing < 0] *= -1.0
    light = _AMBIENT + (1.0 - _AMBIENT) * np.clip(normal @ _LIGHT, 0.0, 1.0)

    colour = _surface_colour(mesh, hits.face, hits.weights)
    canvas[hits.pixel] = np.clip(colour * light[:, None], 0.0, 1.0)
    return _to_image(canvas, size)


def _facing_camera(mesh: trimesh.Trimesh, image: Image.Image) -> npt.NDArray[np.float64]:
    """The turn about +Y whose silhouette best matches the picture's subject.

    Photographs are mostly taken of an object's characteristic side, so the
    width-to-height ratio of the subject in the picture says which way the
    camera looked. Every 5° turn is scored by how far (in log ratio) the
    mesh's projected width-to-height ratio is from the subject's, plus a
    small cost for turning, which picks the nearer of mirror-equal turns.
    The model's own front is kept unless a turn is clearly better.
    """
    left, top, right, bottom = subject_box(image)
    target = math.log(
        max((right - left) * image.width, 1.0) / max((bottom - top) * image.height, 1.0)
    )
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    height = float(np.ptp(vertices[:, 1]))
    if height <= 0:
        return np.eye(4)
    turned_x = np.cos(_YAW_CANDIDATES)[:, None] * vertices[None, :, 0]
    turned_x += np.sin(_YAW_CANDIDATES)[:, None] * vertices[None, :, 2]
    width = np.maximum(np.ptp(turned_x, axis=1), 1e-9)
    turn = np.minimum(_YAW_CANDIDATES, 2 * math.pi - _YAW_CANDIDATES)
    mismatch = np.abs(np.log(width / height) - target)
    if mismatch[0] <= mismatch.min() + _KEEP_TOLERANCE:
        return np.eye(4)
    angle = float(_YAW_CANDIDATES[int(np.argmin(mismatch + _TURN_PENALTY * turn))])
    rotation = trimesh.transformations.rotation_matrix(angle, [0.0, 1.0, 0.0])
    # Keep the bounding box centred where it was.
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    turned = trimesh.transform_points(vertices, rotation)
    shift = centre - (turned.min(axis=0) + turned.max(axis=0)) / 2
    rotation[:3, 3] += shift
    return np.asarray(rotation, dtype=np.float64)


def _projected_texture(mesh: trimesh.Trimesh, image: Image.Image) -> trimesh.visual.TextureVisuals:
    """The picture's subject laid over the mesh by planar projection along Z."""
    texture = texture_image(subject_cutout(image))
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    low = vertices[:, :2].min(axis=0)
    span = np.maximum(vertices[:, :2].max(axis=0) - low, 1e-9)
    uv = (vertices[:, :2] - low) / span
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=1.0
    )
    return trimesh.visual.TextureVisuals(uv=uv, material=material)


@dataclass(frozen=True)
class _Hits:
    """The visible surface: for each covered pixel, its face and weights."""

    pixel: npt.NDArray[np.int64]
    face: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float64]
    """Perspective-correct barycentric weights, one row per pixel."""


@dataclass(frozen=True)
class _Camera:
    rotation: npt.NDArray[np.float64]
    centre: npt.NDArray[np.float64]
    distance: float
    focal: float
    size: int

    @classmethod
    def three_quarter(cls, mesh: trimesh.Trimesh, size: int) -> _Camera:
        """A camera that sees the whole bounding sphere from the preview angle."""
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
        radius = max(float(np.linalg.norm(vertices - centre, axis=1).max()), 1e-9)
        yaw = math.radians(PREVIEW_YAW_DEGREES)
        pitch = math.radians(PREVIEW_PITCH_DEGREES)
        # Turning the object by -yaw about Y, then tilting it towards the
        # camera by pitch about X, is the camera orbiting right and up.
        turn = np.array(
            [[math.cos(yaw), 0, -math.sin(yaw)], [0, 1, 0], [math.sin(yaw), 0, math.cos(yaw)]]
        )
        tilt = np.array(
            [
                [1, 0, 0],
                [0, math.cos(pitch), -math.sin(pitch)],
                [0, math.sin(pitch), math.cos(pitch)],
            ]
        )
        half_fov = math.radians(_FIELD_OF_VIEW_DEGREES) / 2
        distance = radius / math.sin(half_fov) * 1.02
        focal = (size / 2) / math.tan(half_fov)
        return cls(tilt @ turn, centre, distance, focal, size)

    def rotate(self, directions: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        result: npt.NDArray[np.float64] = directions @ self.rotation.T
        return result

    def project(
        self, vertices: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Screen positions (x right, y down, in pixels) and depths along the view."""
        points = self.rotate(vertices - self.centre)
        depth = self.distance - points[:, 2]
        screen = np.empty((len(points), 2))
        screen[:, 0] = self.size / 2 + self.focal * points[:, 0] / depth
        screen[:, 1] = self.size / 2 - self.focal * points[:, 1] / depth
        return screen, depth

    def view_points(
        self,
        hits: _Hits,
        faces: npt.NDArray[np.int64],
        screen: npt.NDArray[np.float64],
        depth: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """The visible points relative to the eye, in camera coordinates."""
        z = np.einsum("fk,fk->f", hits.weights, depth[faces])
        xy = np.einsum("fk,fkc->fc", hits.weights, screen[faces])
        points = np.empty((len(z), 3))
        points[:, 0] = (xy[:, 0] - self.size / 2) * z / self.focal
        points[:, 1] = -(xy[:, 1] - self.size / 2) * z / self.focal
        points[:, 2] = -z
        return points


def _rasterise(
    screen: npt.NDArray[np.float64],
    depth: npt.NDArray[np.float64],
    faces: npt.NDArray[np.int64],
    size: int,
) -> _Hits:
    """Nearest face per pixel, by testing each face's bounding-box pixels.

    Faces are grouped by the power-of-two side of their bounding box, so that
    each group tests a fixed square of candidate pixels in one array
    operation; groups are cut into batches of bounded size. The nearest
    fragment of each pixel is found by one sort on (pixel, depth).
    """
    corners = screen[faces]
    low = np.floor(corners.min(axis=1) - 0.5).astype(np.int64)
    high = np.ceil(corners.max(axis=1) - 0.5).astype(np.int64)
    low = np.clip(low, 0, size - 1)
    high = np.clip(high, 0, size - 1)
    x0, y0 = corners[:, 0, 0], corners[:, 0, 1]
    area = (corners[:, 1, 0] - x0) * (corners[:, 2, 1] - y0)
    area -= (corners[:, 2, 0] - x0) * (corners[:, 1, 1] - y0)
    on_screen = (
        (corners.max(axis=1) >= 0).all(axis=1)
        & (corners.min(axis=1) < size).all(axis=1)
        & (np.abs(area) > 1e-12)
    )
    extent = np.maximum(high - low, 0).max(axis=1) + 1
    bucket = np.ceil(np.log2(extent)).astype(np.int64)

    pixels: list[npt.NDArray[np.int64]] = []
    face_ids: list[npt.NDArray[np.int64]] = []
    weight_rows: list[npt.NDArray[np.float64]] = []
    depths: list[npt.NDArray[np.float64]] = []
    inverse_depth = 1.0 / depth[faces]
    for level in np.unique(bucket[on_screen]):
        side = 1 << int(level)
        members = np.flatnonzero(on_screen & (bucket == level))
        offsets = np.arange(side)
        batch = max(1, _MAX_FRAGMENTS_PER_BATCH // (side * side))
        for start in range(0, len(members), batch):
            ids = members[start : start + batch]
            px = (low[ids, 0, None, None] + offsets[None, None, :]).reshape(len(ids), 1, side)
            py = (low[ids, 1, None, None] + offsets[None, :, None]).reshape(len(ids), side, 1)
            px = np.broadcast_to(px, (len(ids), side, side)).reshape(len(ids), -1)
            py = np.broadcast_to(py, (len(ids), side, side)).reshape(len(ids), -1)
            cx, cy = px + 0.5, py + 0.5
            c = corners[ids]
            w0 = (c[:, 1, None, 0] - cx) * (c[:, 2, None, 1] - cy)
            w0 -= (c[:, 2, None, 0] - cx) * (c[:, 1, None, 1] - cy)
            w1 = (c[:, 2, None, 0] - cx) * (c[:, 0, None, 1] - cy)
            w1 -= (c[:, 0, None, 0] - cx) * (c[:, 2, None, 1] - cy)
            w0 = w0 / area[ids, None]
            w1 = w1 / area[ids, None]
            w2 = 1.0 - w0 - w1
            inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
            inside &= (px <= high[ids, 0, None]) & (py <= high[ids, 1, None])
            row, column = np.nonzero(inside)
            if row.size == 0:
                continue
            screen_weights = np.stack([w0[row, column], w1[row, column], w2[row, column]], axis=1)
            # Perspective-correct: interpolate 1/depth, then renormalise.
            corrected = screen_weights * inverse_depth[ids[row]]
            total = corrected.sum(axis=1)
            pixels.append(py[row, column] * size + px[row, column])
            face_ids.append(ids[row])
            weight_rows.append(corrected / total[:, None])
            depths.append(1.0 / total)
    if not pixels:
        empty = np.zeros(0, dtype=np.int64)
        return _Hits(empty, empty, np.zeros((0, 3)))
    pixel = np.concatenate(pixels)
    fragment_depth = np.concatenate(depths)
    order = np.lexsort((fragment_depth, pixel))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pixel[order[1:]] != pixel[order[:-1]]
    nearest = order[first]
    return _Hits(
        pixel=pixel[nearest],
        face=np.concatenate(face_ids)[nearest],
        weights=np.concatenate(weight_rows)[nearest],
    )


def _surface_colour(
    mesh: trimesh.Trimesh, face_index: npt.NDArray[np.int64], weights: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """sRGB colour in 0..1 at each visible point."""
    visual = mesh.visual
    faces = np.asarray(mesh.faces, dtype=np.int64)[face_index]
    if isinstance(visual, trimesh.visual.TextureVisuals) and visual.uv is not None:
        texture = _base_colour_texture(visual.material)
        if texture is not None:
            uv = np.einsum("fk,fkc->fc", weights, np.asarray(visual.uv, dtype=np.float64)[faces])
            pixels = np.asarray(texture.convert("RGB"), dtype=np.float64) / 255.0
            rows, columns = pixels.shape[:2]
            u = np.clip(np.round((uv[:, 0] % 1.0) * (columns - 1)), 0, columns - 1)
            v = np.clip(np.round((1.0 - uv[:, 1] % 1.0) * (rows - 1)), 0, rows - 1)
            sampled: npt.NDArray[np.float64] = pixels[v.astype(np.int64), u.astype(np.int64)]
            return sampled
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "vertex":
        linear = np.asarray(visual.vertex_colors[:, :3], dtype=np.float64) / 255.0
        return _linear_to_srgb(np.einsum("fk,fkc->fc", weights, linear[faces]))
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "face":
        linear_faces = np.asarray(visual.face_colors[:, :3], dtype=np.float64) / 255.0
        return _linear_to_srgb(linear_faces[face_index])
    return np.broadcast_to(_GREY, (len(faces), 3)).copy()


def _base_colour_texture(material: object) -> Image.Image | None:
    for name in ("baseColorTexture", "image"):
        texture = getattr(material, name, None)
        if isinstance(texture, Image.Image):
            return texture
    return None


def _linear_to_srgb(linear: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = np.clip(linear, 0.0, 1.0)
    result: npt.NDArray[np.float64] = np.where(
        linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055
    )
    return result


def _to_image(canvas: npt.NDArray[np.float64], size: int) -> Image.Image:
    pixels = np.round(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(pixels.reshape(size, size, 3))
