"""The gRPC servicer: proto in, proto out; the work lives in the plans and the device queues."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from genserve.vocabulary import Kind
from inference_server.artifacts import to_chunks
from inference_server.fairness import Origin, Policy
from inference_server.metrics import Metrics
from inference_server.model_config import ModelSpec
from inference_server.plans.common import Batchable, Plan
from inference_server.plans.image import plan_image
from inference_server.plans.mesh import plan_mesh
from inference_server.plans.video import plan_video
from inference_server.previews import Preview, Previewing
from inference_server.registry import ModelRegistry
from inference_server.residency import State
from inference_server.scheduler import mark_retrieved
from inference_server.status_codes import streaming_errors

STAGES = {
    "queued": pb.STAGE_QUEUED,
    "loading": pb.STAGE_LOADING,
    "denoising": pb.STAGE_DENOISING,
    "decoding": pb.STAGE_DECODING,
    "encoding": pb.STAGE_ENCODING,
}

_DONE = object()


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    """Validates, queues, streams progress, encodes off the loop, streams the files."""

    def __init__(
        self,
        registry: ModelRegistry,
        encode_pool: concurrent.futures.Executor,
        metrics: Metrics | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.registry = registry
        self.encode_pool = encode_pool
        self.metrics = metrics
        self.policy = policy or Policy()

    def _origin(self, context: grpc.aio.ServicerContext) -> Origin:
        """The account and plan the caller's metadata names (a default for one naming none)."""
        metadata = {key: value for key, value in (context.invocation_metadata() or ())}
        return self.policy.origin({k: v for k, v in metadata.items() if isinstance(v, str)})

    @streaming_errors
    async def GenerateImage(
        self, request: pb.GenerateImageRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateImageResponse]:
        spec = self.registry.spec(request.model, "image")
        plan = plan_image(spec, request)
        async for event in self._generate(spec, plan, self._origin(context)):
            yield pb.GenerateImageResponse(**event)

    @streaming_errors
    async def GenerateVideo(
        self, request: pb.GenerateVideoRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateVideoResponse]:
        spec = self.registry.spec(request.model, "video")
        plan = plan_video(spec, request)
        async for event in self._generate(spec, plan, self._origin(context)):
            yield pb.GenerateVideoResponse(**event)

    @streaming_errors
    async def GenerateMesh(
        self, request: pb.GenerateMeshRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateMeshResponse]:
        spec = self.registry.spec(request.model, "3d")
        # Decoding an image of up to 50 megapixels takes a while: not on the loop.
        plan = await asyncio.get_running_loop().run_in_executor(
            self.encode_pool, plan_mesh, spec, request
        )
        async for event in self._generate(spec, plan, self._origin(context)):
            yield pb.GenerateMeshResponse(**event)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        table = self.registry.table
        models = [
            model_info(
                spec,
                table.default(spec.kind) is spec,
                self.registry.is_loaded(spec),
                self.registry.step_cache(spec),
                MODEL_STATES[self.registry.state(spec)],
            )
            for spec in table.models
            if request.kind in (pb.MODEL_KIND_UNSPECIFIED, vocab.KIND_TO_PB[spec.kind])
        ]
        return pb.ListModelsResponse(models=models)

    async def _generate(
        self,
        spec: ModelSpec,
        plan: Plan,
        origin: Origin | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The shared stream: queue, progress, encode off the loop, chunks, completion."""
        received = time.perf_counter()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()

        def on_progress(stage: str, step: int, total: int, position: int) -> None:
            events.put_nowait(
                pb.Progress(
                    stage=STAGES[stage],  # type: ignore[arg-type]
                    step=step,
                    total_steps=total,
                    elapsed_seconds=time.perf_counter() - received,
                    queue_position=position,
                )
            )

        def on_preview(step: int, total: int, preview: Preview) -> None:
            event = pb.Progress(
                stage=pb.STAGE_DENOISING,
                step=step,
                total_steps=total,
                elapsed_seconds=time.perf_counter() - received,
                preview=pb.Preview(jpeg=preview.jpeg, width=preview.width, height=preview.height),
            )
            loop.call_soon_threadsafe(events.put_nowait, event)

        if isinstance(plan, Previewing) and plan.preview_every:
            # A Progress carrying a preview follows the plain one of the same step.
            plan.preview_sink = on_preview

        def finished(_future: asyncio.Future[Any]) -> None:
            events.put_nowait(_DONE)

        queue = self.registry.queue_for(spec)
        batching = plan.batching(self.registry) if isinstance(plan, Batchable) else None
        job = queue.submit(
            plan.work(self.registry), on_progress, batching, payload=plan, origin=origin
        )
        job.future.add_done_callback(finished)
        encoding: asyncio.Future[Any] | None = None
        try:
            # Progress goes out as it happens: the device's steps, then the encoder's
            # (both threads hand their events to the loop, ahead of their future's end).
            while (event := await events.get()) is not _DONE:
                yield {"progress": event}
            raw = job.future.result()
            started = job.started_at or received
            inferred = time.perf_counter()

            def encode_step(step: int, total: int, stage: str) -> None:
                loop.call_soon_threadsafe(on_progress, stage, step, total, 0)

            context = contextvars.copy_context()  # the request id, in the encoder's logs
            encoding = loop.run_in_executor(
                self.encode_pool, context.run, plan.encode, raw, encode_step
            )
            encoding.add_done_callback(finished)
            while (event := await events.get()) is not _DONE:
                yield {"progress": event}
            artifacts = encoding.result()
            encoded = time.perf_counter()
            for artifact in artifacts:
                for chunk in to_chunks(artifact):
                    yield {"chunk": chunk}
            timings = pb.Timings(
                queued_seconds=started - received,
                inference_seconds=inferred - started,
                encode_seconds=encoded - inferred,
                total_seconds=time.perf_counter() - received,
            )
            primaries = sum(1 for a in artifacts if a.role == pb.ARTIFACT_ROLE_PRIMARY)
            yield {
                "completion": pb.Completion(
                    timings=timings,
                    seed=plan.seed,
                    artifact_count=primaries,
                    seeds=[plan.seed + i for i in range(primaries)],
                )
            }
        finally:
            queue.withdraw(job)
            if encoding is not None and not encoding.done():
                encoding.add_done_callback(mark_retrieved)  # the caller left while it encoded


def _image_info(spec: ModelSpec, info: pb.ModelInfo) -> None:
    _sized_info(spec, info)
    info.output_formats.extend(vocab.OUTPUT_FORMAT_TO_PB[f] for f in spec.output_formats)
    info.max_images = spec.max_images
    info.max_pixels = spec.pixel_limit
    info.image_modes.extend(spec.image_modes)
    info.loras.extend(pb.LoraInfo(name=x.name, default_scale=x.scale) for x in spec.loras)


def _video_info(spec: ModelSpec, info: pb.ModelInfo) -> None:
    _sized_info(spec, info)
    info.frame_rate = spec.frame_rate
    info.resolutions.extend(spec.resolutions)
    info.min_duration_seconds = spec.min_duration
    info.max_duration_seconds = spec.max_duration
    info.default_duration_seconds = spec.default_duration
    info.image_to_video = spec.image_to_video
    info.first_frame_required = spec.first_frame_required


def _sized_info(spec: ModelSpec, info: pb.ModelInfo) -> None:
    """What the kinds that draw pixels at a chosen aspect ratio share."""
    info.native_width, info.native_height = spec.width, spec.height
    info.size_factor = spec.size_factor
    info.aspect_ratios.extend(spec.allowed_aspect_ratios)


def _mesh_info(spec: ModelSpec, info: pb.ModelInfo) -> None:
    info.texture_qualities.extend(vocab.TEXTURE_QUALITY_TO_PB[q] for q in spec.texture_qualities)
    info.texture_alignments.extend(
        vocab.TEXTURE_ALIGNMENT_TO_PB[a] for a in spec.texture_alignments
    )
    info.orientations.extend(vocab.ORIENTATION_TO_PB[o] for o in spec.orientations)


KIND_INFO: dict[Kind, Callable[[ModelSpec, pb.ModelInfo], None]] = {
    "image": _image_info,
    "video": _video_info,
    "3d": _mesh_info,
}
"""What each kind's entry in ``ListModels`` adds: what its requests are checked against."""


MODEL_STATES: dict[State, pb.ModelState.ValueType] = {
    "device": pb.MODEL_STATE_ON_DEVICE,
    "cpu": pb.MODEL_STATE_IN_CPU_MEMORY,
    "unloaded": pb.MODEL_STATE_NOT_LOADED,
}


def model_info(
    spec: ModelSpec,
    is_default: bool,
    loaded: bool,
    step_cache: str = "",
    state: pb.ModelState.ValueType = pb.MODEL_STATE_UNSPECIFIED,
) -> pb.ModelInfo:
    """What a bridge needs to validate, price and route a request for this model."""
    info = pb.ModelInfo(
        name=spec.name,
        kind=vocab.KIND_TO_PB[spec.kind],
        is_default=is_default,
        source=spec.source,
        default_steps=spec.steps,
        default_guidance=spec.guidance,
        max_steps=spec.max_steps,
        min_guidance=spec.min_guidance,
        max_guidance=spec.max_guidance,
        loaded=loaded,
        step_cache=step_cache,
        state=state,
    )
    KIND_INFO[spec.kind](spec, info)  # a kind without a row is a KeyError, not a wrong entry
    return info
