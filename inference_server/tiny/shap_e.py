"""A tiny ``ShapEImg2ImgPipeline`` with random weights, built in code.

The server's embedded default must run image-to-3D with no download, and the
tests need a real Shap-E pipeline that loads through ``from_pretrained``
exactly as ``openai/shap-e-img2img`` does. The component classes and the
scheduler settings are those of the real checkpoint; only the sizes shrink.

One part cannot come from a config: the renderer's marching-cubes lookup
table. Real checkpoints carry it in their weights, and ``ShapERenderer``
starts with it all zeros, which makes every mesh empty. It is generated here
from the geometry of the cube (see ``marching_cubes_table``). Two small
adjustments of the random weights make the decoded shapes solid blobs rather
than an empty grid or a cloud of specks (see ``shape_surface``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEImg2ImgPipeline
from diffusers.pipelines.shap_e import ShapERenderer
from diffusers.pipelines.shap_e.renderer import volume_query_points
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModel

from inference_server.tiny import parts

SEED = 0
"""Seed of the random weights, so every build of the tiny model is the same."""

IMAGE_SIZE = 32
"""Side of the square the image encoder sees (the real model uses 224)."""

D_LATENT = 32
"""Width of one latent token: the prior's ``embedding_dim``."""

PARAM_SHAPES: tuple[tuple[int, int], ...] = ((8, 93), (8, 8), (8, 8), (8, 8))
"""Shapes of the four MLP weights the latents are projected to.

93 is the size of the renderer's positional encoding and cannot change; the
first dimensions must add up to the prior's ``num_embeddings``.
"""

# Corner ``c`` of a marching cube sits at (c & 1, (c >> 1) & 1, (c >> 2) & 1):
# bit 0 steps along x, bit 1 along y, bit 2 along z. This is the order in which
# diffusers' ``MeshDecoder`` builds its 8-bit case index.
_CORNERS = np.array([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=np.float64)

# The 12 cube edges as corner pairs, in the order of the global edge indices
# that ``MeshDecoder`` gathers: four along x, four along y, four along z.
_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (2, 3), (4, 5), (6, 7),
    (0, 2), (1, 3), (4, 6), (5, 7),
    (0, 4), (1, 5), (2, 6), (3, 7),
)  # fmt: skip

# The six faces: their corners in cyclic order and the outward normal.
_FACES: tuple[tuple[tuple[int, int, int, int], tuple[float, float, float]], ...] = (
    ((0, 2, 6, 4), (-1.0, 0.0, 0.0)),
    ((1, 3, 7, 5), (1.0, 0.0, 0.0)),
    ((0, 1, 5, 4), (0.0, -1.0, 0.0)),
    ((2, 3, 7, 6), (0.0, 1.0, 0.0)),
    ((0, 1, 3, 2), (0.0, 0.0, -1.0)),
    ((4, 5, 7, 6), (0.0, 0.0, 1.0)),
)

_POSENC_OCTAVES = 15
"""Octaves of the renderer's positional encoding of a position."""

_LOW_OCTAVES = 2
"""Octaves the renderer's first layer keeps (see ``_keep_low_frequencies``)."""

_INSIDE_FRACTION = 0.15
"""Share of the decoding grid inside the surface for the reference latent."""

_MAX_TRIANGLES = 5
"""Triangles per case that ``MeshDecoder``'s buffers hold."""


def _edge_index(a: int, b: int) -> int:
    return _EDGES.index((min(a, b), max(a, b)))


def _face_segments(
    case: int, corners: tuple[int, int, int, int], normal: npt.NDArray[np.float64]
) -> list[tuple[int, int]]:
    """Directed segments of the surface on one cube face, as edge pairs.

    Each segment runs so that ``normal × direction`` points to the outside
    (negative field); chained around the cube, the segments then form loops
    that are counter-clockwise seen from outside. On an ambiguous face (inside
    corners on a diagonal) each inside corner is cut off by its own segment.
    The choice depends only on the face's four corners, so the two cubes
    sharing a face always agree and the surface has no holes.
    """
    inside = [bool((case >> c) & 1) for c in corners]
    midpoints = {
        e: (_CORNERS[_EDGES[e][0]] + _CORNERS[_EDGES[e][1]]) / 2 for e in range(len(_EDGES))
    }
    raw: list[tuple[int, int, npt.NDArray[np.float64], float]] = []
    crossing = [
        _edge_index(corners[k], corners[(k + 1) % 4])
        for k in range(4)
        if inside[k] != inside[(k + 1) % 4]
    ]
    if len(crossing) == 2:
        outside_centre = np.mean(
            [_CORNERS[c] for c, i in zip(corners, inside, strict=True) if not i], axis=0
        )
        raw.append((crossing[0], crossing[1], outside_centre, 1.0))
    elif len(crossing) == 4:
        for k in range(4):
            if inside[k]:
                before = _edge_index(corners[k - 1], corners[k])
                after = _edge_index(corners[k], corners[(k + 1) % 4])
                raw.append((before, after, _CORNERS[corners[k]], -1.0))
    segments = []
    for a, b, reference, sign in raw:
        direction = midpoints[b] - midpoints[a]
        middle = (midpoints[a] + midpoints[b]) / 2
        if float(np.dot(np.cross(normal, direction), reference - middle)) * sign < 0:
            a, b = b, a
        segments.append((a, b))
    return segments


def _fan(loop: list[int]) -> list[tuple[int, int, int]]:
    """Fan a loop into triangles with no inner edge lying on a cube face.

    Such an edge would also be drawn by the neighbouring cube, so four
    triangles would meet there and the mesh would not be a closed manifold.
    The first apex that avoids it is taken.
    """
    face_edges = [
        {_edge_index(corners[k], corners[(k + 1) % 4]) for k in range(4)} for corners, _ in _FACES
    ]
    for shift in range(len(loop)):
        turned = loop[shift:] + loop[:shift]
        chords = [(turned[0], turned[i]) for i in range(2, len(turned) - 1)]
        if not any(a in edges and b in edges for a, b in chords for edges in face_edges):
            return [(turned[0], turned[i], turned[i + 1]) for i in range(1, len(turned) - 1)]
    raise AssertionError(f"no fan of loop {loop} avoids the cube faces")


def marching_cubes_table() -> tuple[torch.Tensor, torch.Tensor]:
    """The 256-case lookup table in the layout of ``MeshDecoder``'s buffers.

    Returns ``cases`` [256, 5, 3] (edge indices of up to five triangles per
    case, counter-clockwise seen from outside) and ``masks`` [256, 5] (which of
    the five are used). The surface's pieces on the six faces are chained into
    loops, and each loop is fanned into triangles. With inside corners kept
    apart on ambiguous faces this gives the same surface, case by case, as the
    table in the released Shap-E weights, and never more than five triangles.
    """
    cases = torch.zeros(256, _MAX_TRIANGLES, 3, dtype=torch.long)
    masks = torch.zeros(256, _MAX_TRIANGLES, dtype=torch.bool)
    for case in range(256):
        following: dict[int, int] = {}
        for corners, normal in _FACES:
            for a, b in _face_segments(case, corners, np.asarray(normal)):
                following[a] = b
        triangles: list[tuple[int, int, int]] = []
        while following:
            start = min(following)
            loop = [start]
            current = following.pop(start)
            while current != start:
                loop.append(current)
                current = following.pop(current)
            triangles.extend(_fan(loop))
        if len(triangles) > _MAX_TRIANGLES:
            raise AssertionError(f"case {case} needs {len(triangles)} triangles")
        for slot, triangle in enumerate(triangles):
            cases[case, slot] = torch.tensor(triangle)
            masks[case, slot] = True
    return cases, masks


def make_pipeline() -> ShapEImg2ImgPipeline:
    """Assemble the tiny pipeline in memory, its weights drawn from ``SEED``."""
    hidden = 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        image_encoder = CLIPVisionModel(
            CLIPVisionConfig(
                image_size=IMAGE_SIZE,
                patch_size=8,
                hidden_size=hidden,
                intermediate_size=37,
                projection_dim=hidden,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_channels=3,
            )
        )
        # Same block layout as the real prior (no prd token, layer norms, the
        # output twice as wide as a token: the pipeline keeps the first half).
        prior = PriorTransformer(
            num_attention_heads=2,
            attention_head_dim=16,
            num_layers=1,
            embedding_dim=D_LATENT,
            num_embeddings=sum(rows for rows, _ in PARAM_SHAPES),
            additional_embeddings=0,
            time_embed_act_fn="gelu",
            norm_in_type="layer",
            embedding_proj_norm_type="layer",
            encoder_hid_proj_type=None,
            added_emb_type=None,
            time_embed_dim=64,
            embedding_proj_dim=hidden,
            clip_embed_dim=2 * D_LATENT,
        )
        renderer = ShapERenderer(
            param_shapes=PARAM_SHAPES,
            d_latent=D_LATENT,
            d_hidden=8,
            n_output=12,
            n_hidden_layers=6,
            act_fn="swish",
            insert_direction_at=4,
            background=(255.0, 255.0, 255.0),
        )
    scheduler = HeunDiscreteScheduler(
        beta_schedule="exp",
        num_train_timesteps=1024,
        prediction_type="sample",
        use_karras_sigmas=True,
        clip_sample=True,
        clip_sample_range=1.0,
    )
    # diffusers registers components at run time, out of mypy's sight.
    pipe: Any = ShapEImg2ImgPipeline(
        prior=prior,
        image_encoder=image_encoder,
        image_processor=parts.clip_image_processor(IMAGE_SIZE),
        scheduler=scheduler,
        shap_e_renderer=renderer,
    )
    shape_surface(pipe)
    return pipe


def shape_surface(pipe: Any) -> None:
    """Make a random renderer's signed distance describe a few solid blobs, at any size.

    The marching-cubes table is installed (a config leaves it all zeros), the
    first layer reads only the lowest octaves of the position, and the zero
    level is moved so that part of the volume lies inside. Used by this tiny
    build and by ``bench.published``'s full-size one, on whatever device and
    in whatever dtype the pipeline's weights are.
    """
    renderer = pipe.shap_e_renderer
    cases, masks = marching_cubes_table()
    renderer.mesh_decoder.cases.copy_(cases)
    renderer.mesh_decoder.masks.copy_(masks)
    _keep_low_frequencies(renderer)
    _calibrate_surface(pipe)


def _keep_low_frequencies(renderer: ShapERenderer) -> None:
    """Make the first MLP layer read only the position and its lowest octaves.

    The latents become the weights of the renderer's MLP, whose input is a
    15-octave positional encoding. Random projections weigh every octave
    alike, so the signed distance is noise and the mesh a cloud of thousands
    of specks. Zeroing the projection's output for the high octaves (layer-norm
    gain and bias included, as the norm would otherwise refill them) gives a
    smooth field and a few solid blobs, as a trained model's geometry is.
    """
    rows, inputs = renderer.params_proj.config.param_shapes[0]
    octaves = range(_LOW_OCTAVES)
    keep = [0, 1, 2]
    for offset in (3, 3 + 3 * _POSENC_OCTAVES):  # the sines, then the cosines
        keep += [offset + 3 * k + axis for k in octaves for axis in range(3)]
    dropped = torch.ones(inputs, dtype=torch.bool)
    dropped[keep] = False
    first = renderer.params_proj.projections["nerstf__mlp__0__weight"]
    with torch.no_grad():
        first.norm.weight[dropped] = 0.0
        first.norm.bias[dropped] = 0.0
        first.proj.bias.view(rows, inputs)[:, dropped] = 0.0


def _calibrate_surface(pipe: Any) -> None:
    """Shift the signed distance so that a typical latent encloses some volume.

    With random weights the distance can be negative (outside) everywhere,
    and every mesh would be empty. One reference run measures the raw
    distance on a coarse grid; the output bias then moves the zero level so
    that ``_INSIDE_FRACTION`` of the grid lies inside.
    """
    renderer = pipe.shap_e_renderer
    reference = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    pipe.set_progress_bar_config(disable=True)
    device = next(renderer.parameters()).device
    pipe.to(device)
    latents = pipe(
        reference,
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(SEED),
        output_type="latent",
    ).images
    mlp = copy.deepcopy(renderer.mlp)
    projected = renderer.params_proj(latents)
    raw: list[torch.Tensor] = []
    hook = mlp.mlp[-1].register_forward_hook(lambda _m, _i, out: raw.append(out[..., 0]))
    with torch.no_grad():
        for name, param in mlp.state_dict().items():
            if f"nerstf.{name}" in projected:
                param.copy_(projected[f"nerstf.{name}"].squeeze(0))
        mlp(
            position=volume_query_points(renderer.volume, 32).to(device, latents.dtype)[None],
            direction=None,
            ts=None,
            nerf_level="fine",
            rendering_mode="stf",
        )
        hook.remove()
        level = torch.quantile(raw[0].flatten().float(), 1.0 - _INSIDE_FRACTION)
        renderer.mlp.mlp[-1].bias[0] -= level.to(renderer.mlp.mlp[-1].bias.dtype)


def build(folder: Path) -> None:
    """Write the tiny pipeline to ``folder`` in the diffusers layout."""
    folder.mkdir(parents=True, exist_ok=True)
    pipe: Any = make_pipeline()
    pipe.save_pretrained(folder)
