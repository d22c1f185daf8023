"""Runs a Shap-E image-to-3D pipeline and returns a coloured triangle mesh.

The pipeline is asked for latents only, and the renderer's ``decode_to_mesh``
turns them into a mesh: ``output_type="mesh"`` always decodes on a 128³ grid
(hundreds of thousands of faces, seconds on a CPU), while the grid size here
is the caller's. The same code serves the tiny built-in model and the
released ``openai/shap-e-img2img`` checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import trimesh
from diffusers import ShapEImg2ImgPipeline
from diffusers.pipelines.shap_e.renderer import MeshDecoderOutput
from PIL import Image

from inference_server.errors import InvalidArgument
from inference_server.progress import StepCallback

MIN_GRID_SIZE = 8
MAX_GRID_SIZE = 256
"""Bounds of the decoding grid: below 8 nothing is recognisable, above 256
the grid alone needs gigabytes."""

# Shap-E's frame is +Z up, and its first pan camera (the view the conditioning
# image is reproduced from) sits on -Y looking towards +Y with +X to its
# right. glTF wants +Y up and the front facing +Z: (x, y, z) -> (x, z, -y),
# a proper rotation, so triangle winding is kept.
_SHAP_E_TO_GLTF = np.array(
    [
        [1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0],
        [0.0, -1.0, 0.0],
    ]
)


def run_shap_e(
    pipe: ShapEImg2ImgPipeline,
    image: Image.Image,
    *,
    steps: int,
    guidance: float,
    seed: int,
    on_step: StepCallback,
    grid_size: int = 32,
) -> trimesh.Trimesh:
    """Generate a mesh with vertex colours from one image.

    The mesh is centred on the origin, scaled so that its largest extent is
    1, +Y up with its front towards +Z. Vertex colours are linear RGB, as
    glTF's ``COLOR_0`` is. ``on_step`` hears ``(i, steps, "denoising")`` as
    the denoising steps finish, ``(0, 1, "decoding")`` when the mesh extraction
    starts and ``(1, 1, "decoding")`` when it is done; a ``GenerationCancelled`` it
    raises ends the run.

    Raises ``InvalidArgument`` for out-of-range arguments, and when the model
    finds no surface at all for this image and seed (another seed may).
    """
    if steps < 1:
        raise InvalidArgument(f"steps must be at least 1, not {steps}")
    if not MIN_GRID_SIZE <= grid_size <= MAX_GRID_SIZE:
        raise InvalidArgument(
            f"grid_size must be between {MIN_GRID_SIZE} and {MAX_GRID_SIZE}, not {grid_size}"
        )
    # diffusers registers a pipeline's components at run time, out of mypy's sight.
    shap_e: Any = pipe
    device = shap_e._execution_device
    generator = torch.Generator().manual_seed(seed)
    progress = shap_e.prior.register_forward_hook(_denoising_reporter(shap_e, steps, on_step))
    try:
        latents = shap_e(
            _on_white(image),
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generator,
            output_type="latent",
        ).images
    finally:
        progress.remove()
    renderer = shap_e.shap_e_renderer
    on_step(0, 1, "decoding")
    guard = renderer.mesh_decoder.register_forward_hook(_refuse_empty_surface)
    try:
        decoded = renderer.decode_to_mesh(latents[:1], device, grid_size=grid_size)
    finally:
        guard.remove()
    mesh = _to_trimesh(decoded)
    on_step(1, 1, "decoding")
    return mesh


_ForwardHook = Callable[[torch.nn.Module, Any, Any], None]


def _denoising_reporter(pipe: Any, steps: int, on_step: StepCallback) -> _ForwardHook:
    """A forward hook on the prior that reports finished denoising steps.

    Shap-E's pipeline takes no step callback, but it calls the prior once
    per scheduler timestep. Heun's scheduler has ``2 * steps - 1`` of them
    (two evaluations per step but the first), so the count of calls is
    mapped back onto the requested steps; each step is reported once, the
    last after the last call.
    """
    calls = 0
    reported = 0

    def hook(_module: torch.nn.Module, _args: Any, _output: Any) -> None:
        nonlocal calls, reported
        calls += 1
        total_calls = max(len(pipe.scheduler.timesteps), 1)
        done = min(calls * steps // total_calls, steps)
        while reported < done:
            reported += 1
            on_step(reported, steps, "denoising")

    return hook


def _refuse_empty_surface(_module: torch.nn.Module, _args: Any, output: Any) -> None:
    """Stop before ``decode_to_mesh`` fails obscurely on a mesh with no vertices."""
    if isinstance(output, MeshDecoderOutput) and output.verts.shape[0] == 0:
        raise InvalidArgument(
            "the model found no surface for this image; try another image or seed"
        )


def _on_white(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white, the background Shap-E was trained on."""
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _to_trimesh(decoded: MeshDecoderOutput) -> trimesh.Trimesh:
    vertices: npt.NDArray[np.float64] = decoded.verts.detach().cpu().double().numpy()
    faces = decoded.faces.detach().cpu().numpy().astype(np.int64)
    channels = decoded.vertex_channels
    linear = torch.stack([channels["R"], channels["G"], channels["B"]], dim=-1)
    rgb = np.clip(linear.detach().cpu().float().numpy(), 0.0, 1.0)
    colours = np.concatenate(
        [np.round(rgb * 255.0).astype(np.uint8), np.full((len(rgb), 1), 255, np.uint8)], axis=1
    )
    vertices = vertices @ _SHAP_E_TO_GLTF.T
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    vertices = (vertices - (low + high) / 2.0) / max(float((high - low).max()), 1e-9)
    return trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=colours, process=False)
