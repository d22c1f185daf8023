"""Every model family of ``examples/models/``, scaled down, loaded from its own file and served.

Nothing can be downloaded here, so each family's file is copied with only what
ties it to a machine replaced: the source (a folder holding a small random-weight
pipeline of the published classes, built here), the device and dtype (the CPU,
float32) and the sizes (64x64 pictures; 4 frames a second, so a one-second clip
is a handful of frames), and a preview decoder, which is a download too, by a
small local one. The copies are loaded with ``load_model_table`` and
served together by one real inference server, and each family makes one
generation over gRPC whose output is decoded.

What ties the small builds to the published checkpoints: each file names the
repository and pipeline class of ``bench.published`` (the architectures a GPU
benchmark builds at full size), and each small build has that family's
components, of the same classes, with the same scheduler settings.
"""

from __future__ import annotations

import io
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import trimesh
from diffusers import EulerAncestralDiscreteScheduler
from PIL import Image

from bench.gpu_families import disc_png, with_values
from bench.published import FAMILIES
from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.encoders.video import probe_mp4
from inference_server.model_config import ModelSpec, load_model_table
from inference_server.tiny import flux, ltx2, ltx_video, sd3, sdxl, shap_e, wan
from tests.utils.mp4 import decoded_frame_sizes, decoded_rgb, same_frames
from tests.utils.procs import ROOT, start_inference

EXAMPLES = ROOT / "examples" / "models"
FILES = {path.stem: path for path in sorted(EXAMPLES.glob("*.toml"))}


def _sdxl_turbo(folder: Path) -> None:
    """The small SDXL with SDXL-Turbo's scheduler, as published."""
    _cls, config = FAMILIES["sdxl-turbo"].components["scheduler"]
    sdxl.build(folder, scheduler=EulerAncestralDiscreteScheduler.from_config(config))


SMALL: dict[str, Callable[[Path], None]] = {
    "sdxl": sdxl.build,
    "sdxl-turbo": _sdxl_turbo,
    "flux-schnell": flux.build,
    "flux-kontext-dev": flux.build_kontext,
    "sd3.5-medium": sd3.build,
    "ltx-video": ltx_video.build,
    "ltx-2": ltx2.build,
    "wan2.1-t2v-1.3b": wan.build,
    "wan2.1-i2v-14b-480p": wan.build_i2v,
    "shap-e": shap_e.build,
}

# Shap-E's surface is decoded on a 32^3 grid here: the file's 128^3 (a checkpoint's) makes
# 330k faces, a minute on a loaded 2-core CPU, from a model with nothing finer to show.
MESH_GRID_SIZE = 32

IMAGE_SIDE = 64
FRAME_RATE = 4.0


@dataclass(frozen=True)
class Served:
    """One family as the test serves it: its copied file's entry and the small build."""

    stem: str
    spec: ModelSpec
    folder: Path


def tiny_decoder(folder: Path) -> Path:
    """A small ``AutoencoderTiny`` (4 latent channels) standing for ``madebyollin/taesdxl``."""
    from diffusers import AutoencoderTiny

    if not (folder / "config.json").exists():
        AutoencoderTiny(
            encoder_block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
            latent_channels=4,
        ).save_pretrained(folder)
    return folder


def local_copy(text: str, source: str, kind: str, workspace: Path) -> str:
    """The example file with what ties it to a GPU and a download replaced, and nothing else."""
    values: dict[str, object] = {"source": source, "device": "cpu", "dtype": "float32"}
    if re.search(r"^preview_decoder\s*=", text, re.MULTILINE):
        values["preview_decoder"] = str(tiny_decoder(workspace / "taesd"))
    if kind == "image":
        values |= {"width": IMAGE_SIDE, "height": IMAGE_SIDE}
    if kind == "video":
        values["frame_rate"] = FRAME_RATE
    if kind == "3d":
        values["mesh_grid_size"] = MESH_GRID_SIZE
    return with_values(text, values)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("families")


@pytest.fixture(scope="module")
def families(workspace: Path) -> dict[str, Served]:
    """Each family built small, and its file copied and loaded; one models file of them all."""
    served = {}
    copies = []
    for stem, path in FILES.items():
        (entry,) = tomllib.loads(path.read_text())["models"].values()
        folder = workspace / "builds" / stem
        source = str(folder)
        SMALL[stem](folder)
        copy = workspace / "files" / path.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_text(local_copy(path.read_text(), source, entry["kind"], workspace))
        (spec,) = load_model_table(copy).models
        served[stem] = Served(stem=stem, spec=spec, folder=folder)
        copies.append(copy.read_text())
    (workspace / "models.toml").write_text("\n".join(copies))
    return served


@pytest.fixture(scope="module")
def stub(
    families: dict[str, Served], workspace: Path, logs: Path
) -> Iterator[pb_grpc.InferenceServiceStub]:
    """One inference server for every family: their copied files' tables, joined in one file."""
    proc, port, _metrics = start_inference(
        workspace / "cache", logs, models_file=workspace / "models.toml"
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.InferenceServiceStub(channel)
    proc.stop()


def test_every_family_has_a_file_a_small_build_and_a_published_architecture() -> None:
    assert set(FILES) == set(SMALL) == set(FAMILIES)


@pytest.mark.parametrize("stem", sorted(FILES))
def test_the_file_binds_the_published_checkpoint(stem: str) -> None:
    (spec,) = load_model_table(FILES[stem]).models
    published = FAMILIES[stem]
    assert (spec.source, spec.pipeline) == (published.repo, published.pipeline)
    assert spec.device == "cuda" and spec.dtype in ("float16", "bfloat16")


def _same_class(small: str, published: str) -> bool:
    """Equal up to transformers 5's names: tokenizers without ``Fast`` (the fast one is the
    only one), image processors with ``Pil`` where torchvision is not installed."""

    def plain(name: str) -> str:
        return name.removesuffix("Fast").removesuffix("Pil")

    return plain(small) == plain(published)


@pytest.mark.parametrize("stem", sorted(FILES))
def test_small_build_has_the_published_components(families: dict[str, Served], stem: str) -> None:
    folder = families[stem].folder
    index = json.loads((folder / "model_index.json").read_text())
    published = FAMILIES[stem]
    assert index["_class_name"] == published.pipeline
    small = {  # [library, class]; optional ones left out (FLUX's IP-Adapter encoder) are null
        name: value[1]
        for name, value in index.items()
        if isinstance(value, list) and value[1] is not None
    }
    assert set(small) == set(published.components)
    for name, (cls, config) in published.components.items():
        assert _same_class(small[name], cls), (name, small[name], cls)
        if cls.endswith("Scheduler"):
            saved = json.loads((folder / name / "scheduler_config.json").read_text())
            assert {k: saved[k] for k in config} == config


def _events(stream: Iterable[Any]) -> dict[str, list[Any]]:
    """A generation stream's events by kind: progress, chunk, completion."""
    events: dict[str, list[Any]] = {"progress": [], "chunk": [], "completion": []}
    for event in stream:
        kind = event.WhichOneof("event")
        events[kind].append(getattr(event, kind))
    return events


def _previews(progress: list[pb.Progress], steps: int) -> list[Image.Image]:
    """The previews decoded, each a JPEG of the size it states; one a step, as asked."""
    previews: list[Image.Image] = []
    for preview in (p.preview for p in progress if p.HasField("preview")):
        image = Image.open(io.BytesIO(preview.jpeg))
        image.load()
        assert image.format == "JPEG" and image.size == (preview.width, preview.height)
        previews.append(image)
    assert len(previews) == steps
    return previews


def _primary(chunks: list[pb.ArtifactChunk]) -> bytes:
    return b"".join(c.data for c in chunks if c.role == pb.ARTIFACT_ROLE_PRIMARY)


@pytest.mark.server
def test_the_server_lists_every_family(
    stub: pb_grpc.InferenceServiceStub, families: dict[str, Served]
) -> None:
    listed = {m.name: m for m in stub.ListModels(pb.ListModelsRequest()).models}
    for served in families.values():
        model = listed[served.spec.name]
        assert model.loaded and model.source == served.spec.source
        assert model.default_steps == served.spec.steps
        if served.spec.kind != "3d":
            assert model.size_factor == served.spec.size_factor
        if served.spec.kind == "video":
            assert model.max_duration_seconds == served.spec.max_duration


@pytest.mark.parametrize("stem", sorted(FILES))
@pytest.mark.server
def test_one_generation_per_family(
    stub: pb_grpc.InferenceServiceStub, families: dict[str, Served], stem: str
) -> None:
    spec = families[stem].spec
    steps = min(2, spec.steps)
    # A text prompt, square, with a preview every step.
    prompted: dict[str, Any] = {
        "model": spec.name,
        "prompt": "a red cube on a table",
        "aspect_ratio": "1:1",
        "steps": steps,
        "seed": 7,
        "preview_every": 1,
    }
    if spec.kind == "image":
        events = _events(
            stub.GenerateImage(
                pb.GenerateImageRequest(**prompted, num_images=1, format=pb.IMAGE_FORMAT_PNG)
            )
        )
        image = Image.open(io.BytesIO(_primary(events["chunk"])))
        image.load()
        assert image.format == "PNG" and image.size == (IMAGE_SIDE, IMAGE_SIDE)
        pixels = np.asarray(image.convert("RGB"))
        assert pixels.std() > 0, "a picture, not a flat colour"
        assert all(preview.size[0] > 0 for preview in _previews(events["progress"], steps))
    elif spec.kind == "video":
        # An image-to-video checkpoint makes nothing without its first frame.
        frame = {"init_image": disc_png(96, 30)} if spec.first_frame_required else {}
        events = _events(
            stub.GenerateVideo(
                pb.GenerateVideoRequest(**prompted, resolution="360p", duration_seconds=1, **frame)
            )
        )
        data = _primary(events["chunk"])
        facts = probe_mp4(data)
        assert (facts.width, facts.height, facts.frame_count) == (360, 360, int(FRAME_RATE))
        assert facts.frame_rate == FRAME_RATE
        assert decoded_frame_sizes(data) == [(360, 360)] * facts.frame_count
        assert facts.audio_codecs == (("aac",) if spec.pipeline == "LTX2Pipeline" else ())
        assert all(preview.size == (128, 128) for preview in _previews(events["progress"], steps))
    else:
        events = _events(
            stub.GenerateMesh(
                pb.GenerateMeshRequest(model=spec.name, image=disc_png(96, 30), steps=steps, seed=3)
            )
        )
        scene = trimesh.load(io.BytesIO(_primary(events["chunk"])), file_type="glb")
        assert len(scene.geometry) >= 1
        assert sum(len(g.faces) for g in scene.geometry.values()) > 0
    (completion,) = events["completion"]
    assert completion.artifact_count == 1


@pytest.mark.server
def test_the_edit_family_edits_an_image_by_the_prompt(
    stub: pb_grpc.InferenceServiceStub, families: dict[str, Served]
) -> None:
    """FLUX.1 Kontext: an input image without strength is an instruction edit through the
    loaded FluxKontextPipeline; the same prompt without the image makes another picture."""
    spec = families["flux-kontext-dev"].spec
    assert spec.image_modes == ["text_to_image", "edit"]
    listed = {m.name: m for m in stub.ListModels(pb.ListModelsRequest()).models}
    assert list(listed[spec.name].image_modes) == ["text_to_image", "edit"]
    asked = {"model": spec.name, "prompt": "make it night", "steps": 2, "seed": 5}

    def made(**extra: Any) -> np.ndarray:
        request = pb.GenerateImageRequest(
            **asked, num_images=1, format=pb.IMAGE_FORMAT_PNG, **extra
        )
        image = Image.open(io.BytesIO(_primary(_events(stub.GenerateImage(request))["chunk"])))
        assert image.size == (IMAGE_SIDE, IMAGE_SIDE)
        return np.asarray(image.convert("RGB"))

    edited = made(init_image=disc_png(96, 30))
    assert not np.array_equal(edited, made())
    assert np.array_equal(edited, made(init_image=disc_png(96, 30)))
    with pytest.raises(grpc.RpcError) as refused:  # no strength, no mask: not served
        made(init_image=disc_png(96, 30), strength=0.5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _first_frame() -> bytes:
    """A still with a plain left half and a red disc on the right: a first frame to follow."""
    rgb = np.zeros((90, 120, 3), np.uint8)
    rgb[:, :60] = (30, 60, 200)
    yy, xx = np.mgrid[0:90, 0:120]
    rgb[(xx - 90) ** 2 + (yy - 45) ** 2 < 20**2] = (220, 40, 40)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _from_a_frame(
    stub: pb_grpc.InferenceServiceStub, spec: ModelSpec, frame: bytes | None, seed: int = 7
) -> bytes:
    """A one-second 360p square clip of ``spec`` over gRPC; ``frame`` the first frame."""
    request = pb.GenerateVideoRequest(
        model=spec.name,
        prompt="the ball rolls away",
        aspect_ratio="1:1",
        resolution="360p",
        duration_seconds=1,
        steps=2,
        seed=seed,
        **({"init_image": frame} if frame is not None else {}),
    )
    return _primary(_events(stub.GenerateVideo(request))["chunk"])


def _decoded(data: bytes) -> list[np.ndarray]:
    """The MP4's pictures, after checking its size, frame count and rate."""
    facts = probe_mp4(data)
    assert (facts.width, facts.height, facts.frame_count) == (360, 360, int(FRAME_RATE))
    assert facts.frame_rate == FRAME_RATE
    frames = decoded_rgb(data)
    assert [f.shape for f in frames] == [(360, 360, 3)] * facts.frame_count
    return frames


@pytest.mark.parametrize("stem", ["ltx-video", "ltx-2"])
@pytest.mark.server
def test_a_text_to_video_family_also_starts_from_a_frame(
    stub: pb_grpc.InferenceServiceStub, families: dict[str, Served], stem: str
) -> None:
    """LTX-Video and LTX-2: the first frame through their image-to-video pipelines
    (LTXImageToVideoPipeline, LTX2ImageToVideoPipeline) made with from_pipe on the loaded
    text-to-video weights; the frame changes the clip, and the same frame and seed repeat it."""
    spec = families[stem].spec
    assert spec.image_to_video and not spec.first_frame_required
    listed = {m.name: m for m in stub.ListModels(pb.ListModelsRequest()).models}
    assert listed[spec.name].image_to_video and not listed[spec.name].first_frame_required
    assert not listed[families["wan2.1-t2v-1.3b"].spec.name].image_to_video
    animated = _from_a_frame(stub, spec, _first_frame())
    frames = _decoded(animated)
    assert same_frames(_decoded(_from_a_frame(stub, spec, _first_frame())), frames)
    assert not same_frames(_decoded(_from_a_frame(stub, spec, None)), frames)
    if stem == "ltx-2":
        assert probe_mp4(animated).audio_codecs == ("aac",)


@pytest.mark.server
def test_the_image_to_video_family_needs_its_first_frame(
    stub: pb_grpc.InferenceServiceStub, families: dict[str, Served]
) -> None:
    """Wan 2.1 I2V: WanImageToVideoPipeline animates the frame (its transformer reads the
    frame's latents and its CLIP features); without a frame the request is INVALID_ARGUMENT
    before any work, and ListModels says so."""
    spec = families["wan2.1-i2v-14b-480p"].spec
    assert spec.image_to_video and spec.first_frame_required
    listed = {m.name: m for m in stub.ListModels(pb.ListModelsRequest()).models}
    assert listed[spec.name].image_to_video and listed[spec.name].first_frame_required
    frames = _decoded(_from_a_frame(stub, spec, _first_frame()))
    assert all(f.std() > 0 for f in frames), "pictures, not a flat colour"
    assert not same_frames(_decoded(_from_a_frame(stub, spec, disc_png(96, 30))), frames)
    with pytest.raises(grpc.RpcError) as refused:
        _from_a_frame(stub, spec, None)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first frame" in (refused.value.details() or "")


def test_flux_tokens_unpack_to_the_latent_grid() -> None:
    """Previews read FLUX's packed tokens back as the [C, H, W] latents they were packed from."""
    import torch
    from diffusers import FluxPipeline

    from inference_server.previews import unpack_tokens

    latents = torch.randn(1, 16, 6, 10)  # a 160x96 picture's latents: 5x3 tokens of 2x2 patches
    tokens = FluxPipeline._pack_latents(latents, 1, 16, 6, 10)
    assert torch.equal(unpack_tokens(tokens, (160, 96)), latents)


def test_wan_sizes_are_refused_before_any_work(families: dict[str, Served]) -> None:
    """Wan makes sides in multiples of 16 (8x VAE, 2x2 patches) and 4k+1 frames."""
    from diffusers import WanPipeline

    from inference_server.errors import InvalidArgument
    from inference_server.pipelines.video import run_video, size_rules

    pipe = WanPipeline.from_pretrained(families["wan2.1-t2v-1.3b"].folder)
    assert size_rules(pipe) == (16, 4)
    for width, frames in ((360, 5), (368, 8)):
        with pytest.raises(InvalidArgument):
            run_video(
                pipe, prompt="a", negative_prompt="", width=width, height=368,
                num_frames=frames, frame_rate=16.0, steps=1, guidance=5.0, seed=0,
                on_step=lambda *_: None,
            )  # fmt: skip
