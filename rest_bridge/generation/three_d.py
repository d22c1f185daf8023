"""Image to 3D: ``POST /api/v1/3d``, one image in, a GLB and its rendered preview out.

The input image is validated completely here (one of ``image_url`` and
``image_base64``, at most 20 MB, PNG, JPEG or WebP, at most 50 megapixels;
URLs fetched under the address policy), so that nothing is debited or sent
to the inference server for a request that cannot succeed.
"""

from __future__ import annotations

from math import gcd
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message
from pydantic import PrivateAttr, StrictStr

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from rest_bridge.edge.answers import Answer
from rest_bridge.edge.errors import ApiError
from rest_bridge.generation.base import GenerationBody, GenerationKind, GenerationOutcome, one_of
from rest_bridge.link.catalogue import ModelEntry
from rest_bridge.outbound.image_input import DecodedImage, load_image_input
from rest_bridge.settings import BridgeSettings
from storage.models import Generation

if TYPE_CHECKING:
    from rest_bridge.state import BridgeState


class MeshRequest(GenerationBody):
    """The document's 3D body; ``model`` is an extension (absent: the server's default).

    Exactly one image field must be given; ``load_image_input`` checks that,
    since a missing and an empty field mean different things to the client.
    """

    image_url: StrictStr | None = None
    image_base64: StrictStr | None = None
    texture_quality: vocab.TextureQuality = "standard"
    texture_alignment: vocab.TextureAlignment = "original_image"
    orientation: vocab.Orientation = "default"
    model: StrictStr | None = None

    _input_size: tuple[int, int] | None = PrivateAttr(None)
    """The input image's width and height, once ``prepare`` has decoded its header."""


class ModelFile(Answer):
    url: str
    preview_image: str | None
    content_type: str
    file_name: str
    file_size: int
    texture_quality: str
    generation_id: str


class ThreeDAnswer(Answer):
    model: ModelFile
    generation_time: int
    remaining_points: int
    request_id: str


def reduced_ratio(width: int, height: int) -> str:
    """``1600x1200`` as ``"4:3"``: the input image's aspect ratio, in lowest terms."""
    divisor = gcd(width, height) or 1
    return f"{width // divisor}:{height // divisor}"


class ThreeDKind(GenerationKind[MeshRequest]):
    kind = "3d"
    path = "/api/v1/3d"
    operation = "create_mesh"
    body = MeshRequest
    rpc = "GenerateMesh"
    file_stem = "3d-model"
    answer_model = ThreeDAnswer
    preview_stem = "preview"

    def timeout_s(self, settings: BridgeSettings) -> float:
        return settings.mesh_timeout_s

    def price(self, settings: BridgeSettings, body: MeshRequest, model: ModelEntry) -> int:
        return settings.price_3d

    def price_table(self, settings: BridgeSettings) -> dict[str, Any]:
        return {"points": settings.price_3d}

    def prompt(self, body: MeshRequest) -> str:
        return ""

    def settle(self, body: MeshRequest, model: ModelEntry) -> MeshRequest:
        one_of("texture_quality", body.texture_quality, model.texture_qualities, model)
        one_of("texture_alignment", body.texture_alignment, model.texture_alignments, model)
        one_of("orientation", body.orientation, model.orientations, model)
        return body

    def fetches(self, body: MeshRequest) -> bool:
        return True  # its image, always

    async def prepare(self, state: BridgeState, body: MeshRequest) -> DecodedImage:
        image = await load_image_input(
            body.image_url,
            body.image_base64,
            policy=state.settings.fetch_policy(),
            max_bytes=state.settings.max_upload_bytes,
            max_pixels=vocab.MAX_INPUT_PIXELS,
        )
        body._input_size = (image.width, image.height)
        return image

    def params(self, body: MeshRequest) -> dict[str, Any]:
        """The options, and the input image's size: a 3D project's ``dimensions`` and
        ``aspect_ratio`` are the input image's (the GLB has no pixel size)."""
        params: dict[str, Any] = {
            "texture_quality": body.texture_quality,
            "texture_alignment": body.texture_alignment,
            "orientation": body.orientation,
        }
        if body._input_size is not None:
            width, height = body._input_size
            params.update(
                input_width=width,
                input_height=height,
                aspect_ratio=reduced_ratio(width, height),
            )
        return params

    def request(self, body: MeshRequest, model: ModelEntry, rid: str, prepared: Any) -> Message:
        image: DecodedImage = prepared
        return pb.GenerateMeshRequest(
            model=model.name,
            image=image.data,
            texture_quality=vocab.TEXTURE_QUALITY_TO_PB[body.texture_quality],
            texture_alignment=vocab.TEXTURE_ALIGNMENT_TO_PB[body.texture_alignment],
            orientation=vocab.ORIENTATION_TO_PB[body.orientation],
            request_id=rid,
        )

    def output(
        self,
        state: BridgeState,
        body: MeshRequest,
        model: ModelEntry,
        outcome: GenerationOutcome,
    ) -> dict[str, Any]:
        primaries = outcome.primaries()
        if not primaries:
            raise ApiError(502, "inference_error", "The inference server sent no model.")
        mesh = primaries[0]
        preview = outcome.preview(0)
        return {
            "model": {
                "url": state.file_url(mesh.token, mesh.file_name),
                "preview_image": (
                    state.file_url(preview.token, preview.file_name) if preview else None
                ),
                "content_type": mesh.content_type,
                "file_name": mesh.file_name,
                "file_size": mesh.file_size,
                "texture_quality": body.texture_quality,
                "generation_id": outcome.generation.id,
            },
        }

    def describe(self, model: ModelEntry) -> dict[str, Any]:
        return {
            "texture_quality": list(model.texture_qualities or vocab.TEXTURE_QUALITIES),
            "texture_alignment": list(model.texture_alignments or vocab.TEXTURE_ALIGNMENTS),
            "orientation": list(model.orientations or vocab.ORIENTATIONS),
        }

    def metadata(self, gen: Generation) -> dict[str, Any]:
        found: dict[str, Any] = {
            "texture_quality": gen.params.get("texture_quality"),
            "texture_alignment": gen.params.get("texture_alignment"),
            "orientation": gen.params.get("orientation"),
        }
        width, height = gen.params.get("input_width"), gen.params.get("input_height")
        if width and height:  # rows from before the input size was recorded have neither
            found["dimensions"] = f"{width}x{height}"
        return found


THREE_D = ThreeDKind()
