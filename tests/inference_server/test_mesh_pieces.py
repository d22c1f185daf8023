"""The relief model, the tiny Shap-E pipeline, its runner and the mesh encoders."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import trimesh
from diffusers import DiffusionPipeline, ShapEImg2ImgPipeline
from PIL import Image, ImageDraw

from inference_server.encoders.mesh import dress_mesh, export_glb, render_preview
from inference_server.errors import GenerationCancelled, InvalidArgument
from inference_server.pipelines.mesh import run_shap_e
from inference_server.pipelines.relief import build_relief_mesh
from inference_server.segmentation import subject_box
from inference_server.tiny import shap_e
from tests.utils.glb import glb_json, primitive_attributes
from tests.utils.steps import Recorder

SIZE = 512


def transparent_disc() -> Image.Image:
    """An opaque red disc, wider than tall, on a fully transparent background."""
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((96, 160, 416, 352), fill=(220, 40, 40, 255))
    return image


def photo() -> Image.Image:
    """A noisy, shaded subject on a uniform blue backdrop, with no alpha."""
    rng = np.random.default_rng(7)
    rows, columns = np.mgrid[:SIZE, :SIZE]
    pixels = np.zeros((SIZE, SIZE, 3), dtype=np.int64)
    pixels[:] = (40, 90, 200)
    inside = ((columns - 256) / 150.0) ** 2 + ((rows - 280) / 200.0) ** 2 < 1
    pixels[inside, 0] = columns[inside] * 255 // SIZE
    pixels[inside, 1] = rows[inside] * 255 // SIZE
    pixels[inside, 2] = 120
    pixels += rng.integers(-6, 7, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def load_glb(data: bytes) -> trimesh.Trimesh:
    loaded = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh")
    assert isinstance(loaded, trimesh.Trimesh)
    return loaded


@pytest.fixture(scope="module")
def shap_e_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-shap-e")
    shap_e.build(folder)
    return folder


@pytest.fixture(scope="module")
def shap_e_pipe(shap_e_folder: Path) -> ShapEImg2ImgPipeline:
    pipe = ShapEImg2ImgPipeline.from_pretrained(shap_e_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def shap_e_mesh(shap_e_pipe: ShapEImg2ImgPipeline) -> trimesh.Trimesh:
    return run_shap_e(
        shap_e_pipe, transparent_disc(), steps=3, guidance=3.0, seed=1, on_step=Recorder()
    )


# --- relief -----------------------------------------------------------------


@pytest.mark.parametrize("make_image", [transparent_disc, photo], ids=["rgba", "photo"])
def test_relief_is_a_closed_volume_facing_the_camera(make_image: Any) -> None:
    recorder = Recorder()
    mesh = build_relief_mesh(make_image(), on_step=recorder)

    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.is_volume
    assert recorder.calls == [(1, 3, "denoising"), (2, 3, "denoising"), (3, 3, "denoising")]
    low, high = mesh.bounds
    assert max(high[0] - low[0], high[1] - low[1]) == pytest.approx(1.0)
    assert np.allclose((low + high)[:2] / 2, 0.0, atol=1e-9)
    # The front (+Z) carries the picture: it bulges out and has the UVs.
    assert high[2] > 0.1
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert mesh.visual.uv.shape == (len(mesh.vertices), 2)


def test_relief_follows_the_subject_silhouette() -> None:
    disc = build_relief_mesh(transparent_disc())
    width, height = disc.extents[:2]
    assert width / height == pytest.approx(320 / 192, rel=0.05)

    box = subject_box(photo())
    assert box == pytest.approx((106 / SIZE, 80 / SIZE, 406 / SIZE, 480 / SIZE), abs=0.02)
    person = build_relief_mesh(photo())
    assert person.extents[0] / person.extents[1] == pytest.approx(300 / 400, rel=0.05)


def test_relief_uses_the_whole_picture_when_no_subject_stands_out() -> None:
    mesh = build_relief_mesh(Image.new("RGB", (300, 200), (128, 128, 128)), resolution=64)

    assert mesh.is_volume
    assert mesh.extents[0] / mesh.extents[1] == pytest.approx(1.5, rel=0.03)


@pytest.mark.parametrize("resolution", [4, 4096])
def test_relief_rejects_an_unreasonable_resolution(resolution: int) -> None:
    with pytest.raises(InvalidArgument):
        build_relief_mesh(photo(), resolution=resolution)


# --- options and GLB ----------------------------------------------------------


def test_standard_original_image_writes_a_textured_glb() -> None:
    image = photo()
    mesh = dress_mesh(
        build_relief_mesh(image),
        image,
        texture_quality="standard",
        texture_alignment="original_image",
        orientation="default",
    )
    data = export_glb(mesh)

    document = glb_json(data)
    assert document["images"] and document["textures"]
    material = document["materials"][0]
    assert "baseColorTexture" in material["pbrMetallicRoughness"]
    assert "TEXCOORD_0" in primitive_attributes(document)
    loaded = load_glb(data)
    assert loaded.is_watertight
    assert isinstance(loaded.visual, trimesh.visual.TextureVisuals)
    material = loaded.visual.material
    assert isinstance(material, trimesh.visual.material.PBRMaterial)
    assert material.baseColorTexture is not None


def test_no_texture_quality_writes_geometry_only(shap_e_mesh: trimesh.Trimesh) -> None:
    for mesh in (build_relief_mesh(photo()), shap_e_mesh):
        plain = dress_mesh(
            mesh,
            photo(),
            texture_quality="no",
            texture_alignment="original_image",
            orientation="default",
        )
        document = glb_json(export_glb(plain))

        assert "images" not in document
        assert "textures" not in document
        assert not primitive_attributes(document) & {"COLOR_0", "TEXCOORD_0"}
        assert getattr(load_glb(export_glb(plain)).visual, "kind", "missing") is None


def test_geometry_alignment_keeps_shap_e_vertex_colours(shap_e_mesh: trimesh.Trimesh) -> None:
    coloured = dress_mesh(
        shap_e_mesh,
        transparent_disc(),
        texture_quality="standard",
        texture_alignment="geometry",
        orientation="default",
    )
    data = export_glb(coloured)

    assert "COLOR_0" in primitive_attributes(glb_json(data))
    loaded = load_glb(data)
    assert isinstance(loaded.visual, trimesh.visual.ColorVisuals)
    assert loaded.visual.kind == "vertex"
    assert len(loaded.vertices) == len(shap_e_mesh.vertices)


def test_align_image_keeps_a_relief_and_turns_a_side_on_mesh() -> None:
    image = transparent_disc()
    relief = build_relief_mesh(image)
    kept = dress_mesh(
        relief,
        image,
        texture_quality="standard",
        texture_alignment="geometry",
        orientation="align_image",
    )
    assert np.allclose(kept.vertices, relief.vertices)

    # Thin along X and wide along Z: the picture's wide subject is its side.
    slab = trimesh.creation.box(extents=(0.1, 0.6, 1.0))
    turned = dress_mesh(
        slab,
        image,
        texture_quality="no",
        texture_alignment="geometry",
        orientation="align_image",
    )
    # Turned a quarter, to the 5° step: the wide side now spans X.
    assert turned.extents[0] == pytest.approx(1.0, abs=0.02)
    assert turned.extents[2] < 0.3
    assert np.allclose(turned.bounds.mean(axis=0), slab.bounds.mean(axis=0))


# --- preview ------------------------------------------------------------------


@pytest.mark.parametrize("quality", ["standard", "no"])
def test_preview_is_a_shaded_view_not_the_input(quality: str) -> None:
    image = photo()
    mesh = dress_mesh(
        build_relief_mesh(image),
        image,
        texture_quality=quality,
        texture_alignment="original_image",
        orientation="default",
    )
    preview = render_preview(mesh, size=256)

    buffer = io.BytesIO()
    preview.save(buffer, format="JPEG")
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    assert decoded.size == (256, 256)
    assert decoded.mode == "RGB"
    pixels = np.asarray(preview, dtype=np.float64)
    source = np.asarray(image.resize((256, 256)), dtype=np.float64)
    assert np.abs(pixels - source).mean() > 20
    covered = (pixels < 250).any(axis=2)
    assert 0.2 < covered.mean() < 0.9
    if quality == "no":
        spread = pixels[covered].max(axis=1) - pixels[covered].min(axis=1)
        assert spread.max() <= 2


def test_preview_of_vertex_colours_uses_them(shap_e_mesh: trimesh.Trimesh) -> None:
    coloured = shap_e_mesh.copy()
    coloured.visual = trimesh.visual.ColorVisuals(
        vertex_colors=np.tile([255, 0, 0, 255], (len(coloured.vertices), 1))
    )
    pixels = np.asarray(render_preview(coloured, size=128, background=(0, 0, 0)), dtype=float)

    covered = pixels.sum(axis=2) > 0
    assert covered.mean() > 0.1
    assert (pixels[covered][:, 1:] == 0).all()
    assert pixels[covered][:, 0].max() > 200


# --- tiny Shap-E --------------------------------------------------------------


def test_marching_cubes_table_closes_a_sphere(shap_e_pipe: Any) -> None:
    decoder = shap_e_pipe.shap_e_renderer.mesh_decoder
    axis = torch.linspace(-1.0, 1.0, 24)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    field = 0.7 - torch.sqrt(x**2 + y**2 + z**2)  # positive inside

    raw = decoder(field, torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([2.0, 2.0, 2.0]))
    sphere = trimesh.Trimesh(raw.verts.numpy(), raw.faces.numpy(), process=False)

    assert sphere.is_watertight
    assert sphere.is_winding_consistent
    assert sphere.volume == pytest.approx(4 / 3 * math.pi * 0.7**3, rel=0.05)


def test_tiny_shap_e_loads_through_both_entry_points(shap_e_folder: Path) -> None:
    generic: Any = DiffusionPipeline.from_pretrained(shap_e_folder)

    assert isinstance(generic, ShapEImg2ImgPipeline)
    assert bool(generic.shap_e_renderer.mesh_decoder.masks.any())


def test_run_shap_e_gives_a_coloured_mesh_and_reports_progress(
    shap_e_pipe: ShapEImg2ImgPipeline,
) -> None:
    recorder = Recorder()
    mesh = run_shap_e(
        shap_e_pipe, photo(), steps=4, guidance=3.0, seed=3, on_step=recorder, grid_size=32
    )

    assert len(mesh.faces) > 100
    assert isinstance(mesh.visual, trimesh.visual.ColorVisuals)
    assert mesh.visual.kind == "vertex"
    assert mesh.extents.max() == pytest.approx(1.0)
    assert np.allclose(mesh.bounds.mean(axis=0), 0.0, atol=1e-9)
    assert recorder.calls == [(step, 4, "denoising") for step in range(1, 5)] + [
        (0, 1, "decoding"),
        (1, 1, "decoding"),
    ]


def test_run_shap_e_stops_when_cancelled(shap_e_pipe: ShapEImg2ImgPipeline) -> None:
    recorder = Recorder(cancel_at=2)
    with pytest.raises(GenerationCancelled):
        run_shap_e(shap_e_pipe, photo(), steps=4, guidance=3.0, seed=3, on_step=recorder)

    assert recorder.calls == [(1, 4, "denoising"), (2, 4, "denoising")]
    # The progress hook is gone: the next run reports from the start again.
    again = Recorder()
    run_shap_e(shap_e_pipe, photo(), steps=2, guidance=3.0, seed=3, on_step=again)
    assert again.calls[0] == (1, 2, "denoising")


def test_run_shap_e_refuses_an_empty_surface(shap_e_folder: Path) -> None:
    pipe: Any = ShapEImg2ImgPipeline.from_pretrained(shap_e_folder)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        pipe.shap_e_renderer.mlp.mlp[-1].bias[0] = -100.0  # outside everywhere

    with pytest.raises(InvalidArgument, match="no surface"):
        run_shap_e(pipe, photo(), steps=2, guidance=3.0, seed=0, on_step=Recorder())


@pytest.mark.parametrize(("steps", "grid_size"), [(0, 32), (4, 4), (4, 1024)])
def test_run_shap_e_rejects_bad_arguments(
    shap_e_pipe: ShapEImg2ImgPipeline, steps: int, grid_size: int
) -> None:
    with pytest.raises(InvalidArgument):
        run_shap_e(
            shap_e_pipe,
            photo(),
            steps=steps,
            guidance=3.0,
            seed=0,
            on_step=Recorder(),
            grid_size=grid_size,
        )
