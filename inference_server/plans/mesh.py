"""Image to 3D: the plan of one GenerateMesh request.

Two kinds of model sit behind the same plan: the weightless ``relief``
built-in, and Shap-E image-to-3D pipelines (the tiny built-in one or a real
checkpoint). Both give a trimesh in glTF's frame (+Y up, front towards +Z)
with colours of their own, so the request's options, the GLB export and the
preview are the same code for either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import trimesh
from PIL import Image

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from inference_server.artifacts import Artifact
from inference_server.encoders.images import encode_image
from inference_server.encoders.mesh import dress_mesh, export_glb, render_preview
from inference_server.errors import InvalidArgument
from inference_server.loader import builtin_name
from inference_server.model_config import ModelSpec
from inference_server.pipelines.mesh import run_shap_e
from inference_server.pipelines.relief import build_relief_mesh
from inference_server.plans.common import accepted, decode_input_image, random_seed, steps_for
from inference_server.progress import StepCallback
from inference_server.registry import ModelRegistry
from inference_server.segmentation import subject_cutout

GLB_CONTENT_TYPE = "model/gltf-binary"

RELIEF_RESOLUTION = 192
"""Longer side of the relief's working grid: about 30k triangles, a few
hundred kilobytes of GLB, and still well under a second on one CPU core."""

PREVIEW_SIZE = 512

TINY_GRID_SIZE = 32
CHECKPOINT_GRID_SIZE = 128
"""Decoding grids of Shap-E unless the model sets ``mesh_grid_size``: the tiny
built-in has nothing finer to show; a released checkpoint gets the grid
diffusers itself uses for meshes."""

_SUBJECT_MARGIN = 0.1
"""Space left around the subject when it is framed for Shap-E, per side."""

# The document's defaults stand in for unset enums: standard, original_image, default.
TEXTURE_QUALITIES: dict[pb.TextureQuality.ValueType, vocab.TextureQuality] = {
    pb.TEXTURE_QUALITY_UNSPECIFIED: "standard",
    **vocab.TEXTURE_QUALITY_FROM_PB,
}
TEXTURE_ALIGNMENTS: dict[pb.TextureAlignment.ValueType, vocab.TextureAlignment] = {
    pb.TEXTURE_ALIGNMENT_UNSPECIFIED: "original_image",
    **vocab.TEXTURE_ALIGNMENT_FROM_PB,
}
ORIENTATIONS: dict[pb.Orientation.ValueType, vocab.Orientation] = {
    pb.ORIENTATION_UNSPECIFIED: "default",
    **vocab.ORIENTATION_FROM_PB,
}

OptionT = TypeVar("OptionT", bound=str)


@dataclass
class MeshPlan:
    """One request, validated: the decoded image and the options as the encoders name them.

    The image is decoded once, before queueing, so a bad one never takes a
    place in the device queue, and both the model and the encoders use it.
    """

    spec: ModelSpec
    image: Image.Image
    texture_quality: vocab.TextureQuality
    texture_alignment: vocab.TextureAlignment
    orientation: vocab.Orientation
    steps: int
    seed: int

    def work(self, registry: ModelRegistry) -> Callable[[StepCallback], trimesh.Trimesh]:
        def generate(on_step: StepCallback) -> trimesh.Trimesh:
            builtin = builtin_name(self.spec)
            if builtin == "relief":
                return build_relief_mesh(self.image, resolution=RELIEF_RESOLUTION, on_step=on_step)
            return run_shap_e(
                registry.pipeline(self.spec, on_step),
                framed_subject(self.image),
                steps=self.steps,
                guidance=self.spec.guidance,
                seed=self.seed,
                on_step=on_step,
                grid_size=self.spec.mesh_grid_size
                or (TINY_GRID_SIZE if builtin is not None else CHECKPOINT_GRID_SIZE),
            )

        return generate

    def encode(self, raw: trimesh.Trimesh, on_step: StepCallback) -> list[Artifact]:
        # Both models colour their own surface: the relief with the picture as
        # a UV texture, Shap-E with vertex colours.
        mesh = dress_mesh(
            raw,
            self.image,
            texture_quality=self.texture_quality,
            texture_alignment=self.texture_alignment,
            orientation=self.orientation,
        )
        glb = export_glb(mesh)
        on_step(1, 2, "encoding")
        preview = render_preview(mesh, size=PREVIEW_SIZE)
        jpeg = encode_image(preview, "jpeg")
        on_step(2, 2, "encoding")
        return [
            Artifact(data=glb, content_type=GLB_CONTENT_TYPE, file_name="3d-model-1.glb"),
            Artifact(
                data=jpeg,
                content_type="image/jpeg",
                file_name="preview-1.jpg",
                role=pb.ARTIFACT_ROLE_PREVIEW,
                width=preview.width,
                height=preview.height,
            ),
        ]


def framed_subject(image: Image.Image) -> Image.Image:
    """The subject alone, centred on a transparent square with a margin.

    Shap-E was trained on single objects in the middle of a white frame; a
    photo's background and an off-centre subject would otherwise become part
    of the shape. ``run_shap_e`` flattens the transparency onto white.
    """
    cutout = subject_cutout(image)
    side = round(max(cutout.size) * (1 + 2 * _SUBJECT_MARGIN))
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    canvas.paste(cutout, ((side - cutout.width) // 2, (side - cutout.height) // 2))
    return canvas


def _option(
    name: str, table: Mapping[Any, OptionT], value: int, choices: list[str], spec: ModelSpec
) -> OptionT:
    option = table.get(value)
    if option is None:
        raise InvalidArgument(f"unknown {name} value {value}")
    accepted(name, option, choices, spec)
    return option


def plan_mesh(spec: ModelSpec, request: pb.GenerateMeshRequest) -> MeshPlan:
    """Validate the request and decode its image; blocking, so run it off the event loop."""
    texture_quality = _option(
        "texture_quality",
        TEXTURE_QUALITIES,
        request.texture_quality,
        list(spec.texture_qualities),
        spec,
    )
    texture_alignment = _option(
        "texture_alignment",
        TEXTURE_ALIGNMENTS,
        request.texture_alignment,
        list(spec.texture_alignments),
        spec,
    )
    orientation = _option(
        "orientation", ORIENTATIONS, request.orientation, list(spec.orientations), spec
    )
    steps = steps_for(request.steps, spec)
    image = decode_input_image(request.image)
    return MeshPlan(
        spec=spec,
        image=image,
        texture_quality=texture_quality,
        texture_alignment=texture_alignment,
        orientation=orientation,
        steps=steps,
        seed=random_seed(request.HasField("seed"), request.seed),
    )
