"""Tiny LTX pipelines, video geometry, the video runner and the MP4 encoder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from diffusers import DiffusionPipeline, LTX2Pipeline, LTXPipeline

from inference_server.encoders.video import encode_mp4, poster_frame, probe_mp4
from inference_server.errors import GenerationCancelled, InvalidArgument
from inference_server.pipelines.video import VideoResult, run_video
from inference_server.tiny import ltx2, ltx_video
from inference_server.video_geometry import (
    centre_crop,
    encoded_frame_count,
    frame_count,
    output_size,
    video_size,
)
from tests.utils.mp4 import decoded_frame_sizes, mp4_box_order
from tests.utils.steps import Recorder

SIZE = 64
FRAMES = 9
FPS = 24.0


@pytest.fixture(scope="session")
def ltx_video_pipe(tmp_path_factory: pytest.TempPathFactory) -> LTXPipeline:
    folder = tmp_path_factory.mktemp("tiny-ltx-video")
    ltx_video.build(folder)
    pipe = LTXPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def ltx2_pipe(tmp_path_factory: pytest.TempPathFactory) -> DiffusionPipeline:
    folder = tmp_path_factory.mktemp("tiny-ltx2")
    ltx2.build(folder)
    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(
    pipe: DiffusionPipeline, on_step: Recorder, steps: int = 2, seed: int = 7
) -> VideoResult:
    return run_video(
        pipe,
        prompt="A red spaceship flying through a colorful nebula",
        negative_prompt="blurry",
        width=SIZE,
        height=SIZE,
        num_frames=FRAMES,
        frame_rate=FPS,
        steps=steps,
        guidance=3.0,
        seed=seed,
        on_step=on_step,
    )


@pytest.fixture
def transformer_calls(request: pytest.FixtureRequest) -> Iterator[list[int]]:
    """Counts forward passes of the named pipeline fixture's transformer."""
    pipe: DiffusionPipeline = request.getfixturevalue(request.param)
    calls: list[int] = []

    def hook(*_: Any) -> None:
        calls.append(1)

    handle = pipe.transformer.register_forward_hook(hook)
    yield calls
    handle.remove()


def gradient_frames(count: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [
            np.stack([(x + 4 * t) % 256, (y + 2 * t) % 256, (x + y) % 256], axis=-1)
            for t in range(count)
        ]
    ).astype(np.uint8)


# Tiny pipelines and the runner


def test_ltx_video_builds_loads_and_runs(ltx_video_pipe: LTXPipeline) -> None:
    assert ltx_video_pipe.vae_spatial_compression_ratio == 32
    assert ltx_video_pipe.vae_temporal_compression_ratio == 8
    steps = Recorder()
    result = generate(ltx_video_pipe, steps)
    assert result.frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert result.frames.dtype == np.uint8
    assert result.frames.std() > 0
    assert result.audio is None and result.sample_rate is None
    assert result.fps == FPS
    assert steps.calls == [
        (1, 2, "denoising"),
        (2, 2, "denoising"),
        (0, 1, "decoding"),
        (1, 1, "decoding"),
    ]


def test_same_seed_same_video(ltx_video_pipe: LTXPipeline) -> None:
    first = generate(ltx_video_pipe, Recorder(), steps=2, seed=3)
    again = generate(ltx_video_pipe, Recorder(), steps=2, seed=3)
    other = generate(ltx_video_pipe, Recorder(), steps=2, seed=4)
    assert np.array_equal(first.frames, again.frames)
    assert not np.array_equal(first.frames, other.frames)


def test_ltx2_builds_loads_and_runs_with_audio(ltx2_pipe: DiffusionPipeline) -> None:
    assert isinstance(ltx2_pipe, LTX2Pipeline)
    assert ltx2_pipe.vae_spatial_compression_ratio == 32
    steps = Recorder()
    result = generate(ltx2_pipe, steps)
    assert result.frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert result.sample_rate == ltx2.AUDIO_SAMPLE_RATE
    assert result.audio is not None
    assert result.audio.dtype == np.float32 and result.audio.shape[0] == 2
    assert np.isfinite(result.audio).all() and result.audio.std() > 0
    expected_samples = FRAMES / FPS * ltx2.AUDIO_SAMPLE_RATE
    assert abs(result.audio.shape[1] - expected_samples) < 0.2 * expected_samples
    assert [stage for _, _, stage in steps.calls] == ["denoising"] * 2 + ["decoding"] * 2


@pytest.mark.parametrize(
    ("transformer_calls", "passes_per_step"),
    [("ltx_video_pipe", 1), ("ltx2_pipe", 3)],
    indirect=["transformer_calls"],
)
def test_cancel_at_first_step_stops_the_run(
    request: pytest.FixtureRequest, transformer_calls: list[int], passes_per_step: int
) -> None:
    pipe = request.getfixturevalue(request.node.callspec.params["transformer_calls"])
    steps = Recorder(cancel_at=1)
    with pytest.raises(GenerationCancelled):
        generate(pipe, steps, steps=4)
    assert steps.calls == [(1, 4, "denoising")]
    # LTX-2 runs the model three times a step (guidance, STG, modality isolation).
    assert len(transformer_calls) == passes_per_step


def test_one_step_is_refused_where_it_would_give_nan(ltx_video_pipe: LTXPipeline) -> None:
    with pytest.raises(InvalidArgument):
        generate(ltx_video_pipe, Recorder(), steps=1)


@pytest.mark.parametrize(("size", "frames"), [(48, FRAMES), (SIZE, 8)])
def test_shapes_the_vae_cannot_tile_are_refused(
    ltx_video_pipe: LTXPipeline, size: int, frames: int
) -> None:
    with pytest.raises(InvalidArgument):
        run_video(
            ltx_video_pipe,
            prompt="a cat",
            negative_prompt="",
            width=size,
            height=SIZE,
            num_frames=frames,
            frame_rate=FPS,
            steps=2,
            guidance=3.0,
            seed=0,
            on_step=Recorder(),
        )


def test_pipeline_still_works_after_a_cancel(ltx_video_pipe: LTXPipeline) -> None:
    with pytest.raises(GenerationCancelled):
        generate(ltx_video_pipe, Recorder(cancel_at=1), steps=3)
    assert generate(ltx_video_pipe, Recorder(), steps=2).frames.shape[0] == FRAMES


# Geometry


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "output", "generated"),
    [
        ("360p", "16:9", (640, 360), (640, 384)),
        ("520p", "16:9", (924, 520), (928, 544)),
        ("720p", "16:9", (1280, 720), (1280, 736)),
        ("1080p", "16:9", (1920, 1080), (1920, 1088)),
        ("720p", "9:16", (720, 1280), (736, 1280)),
        ("720p", "1:1", (720, 720), (736, 736)),
        ("720p", "4:3", (960, 720), (960, 736)),
        ("520p", "3:4", (520, 694), (544, 704)),
    ],
)
def test_video_size(
    resolution: str, aspect_ratio: str, output: tuple[int, int], generated: tuple[int, int]
) -> None:
    """The document's sizes (720p 16:9 is 1280x720), generated at the model's multiple."""
    assert output_size(resolution, aspect_ratio) == output
    assert video_size(resolution, aspect_ratio, 32) == generated


@pytest.mark.parametrize("resolution", ["360p", "520p", "720p", "1080p"])
@pytest.mark.parametrize("aspect_ratio", ["16:9", "9:16", "1:1", "4:3", "3:4"])
def test_the_output_size_is_exact_and_generated_sizes_cover_it(
    resolution: str, aspect_ratio: str
) -> None:
    width, height = output_size(resolution, aspect_ratio)
    ratio_w, ratio_h = (int(part) for part in aspect_ratio.split(":"))
    assert min(width, height) == int(resolution[:-1])
    assert width % 2 == 0 and height % 2 == 0  # yuv420p
    assert (
        abs(max(width, height) - min(width, height) * max(ratio_w, ratio_h) / min(ratio_w, ratio_h))
        <= 1
    )
    gen_w, gen_h = video_size(resolution, aspect_ratio, 32)
    assert gen_w % 32 == 0 and gen_h % 32 == 0
    assert 0 <= gen_w - width < 32 and 0 <= gen_h - height < 32


def test_centre_crop_keeps_the_middle() -> None:
    frames = np.arange(2 * 6 * 8 * 1, dtype=np.uint8).reshape(2, 6, 8, 1)
    cropped = centre_crop(frames, 4, 2)
    assert cropped.shape == (2, 2, 4, 1)
    assert (cropped == frames[:, 2:4, 2:6]).all()
    with pytest.raises(ValueError):
        centre_crop(frames, 10, 2)


@pytest.mark.parametrize(
    ("duration", "fps", "generated", "encoded"),
    [
        (4, 24.0, 97, 96),
        (1, 24.0, 25, 24),
        (10, 24.0, 241, 240),
        (4, 25.0, 105, 100),
        (5, 30.0, 153, 150),
    ],
)
def test_frame_counts(duration: int, fps: float, generated: int, encoded: int) -> None:
    assert frame_count(duration, fps, 8) == generated
    assert encoded_frame_count(duration, fps) == encoded
    assert (generated - 1) % 8 == 0 and 0 <= generated - encoded <= 8


# MP4 encoding


def test_encode_mp4_is_streamable_h264() -> None:
    frames = gradient_frames(48, 96, 160)
    progress: list[tuple[int, int]] = []
    data = encode_mp4(frames, 24.0, on_frame=lambda done, total: progress.append((done, total)))
    order = mp4_box_order(data)
    assert order[0] == "ftyp" and order.index("moov") < order.index("mdat")
    facts = probe_mp4(data)
    assert (facts.video_codec, facts.pixel_format) == ("h264", "yuv420p")
    assert (facts.width, facts.height) == (160, 96)
    assert facts.frame_count == 48 and facts.frame_rate == 24.0
    assert decoded_frame_sizes(data) == [(160, 96)] * 48
    assert abs(facts.duration_seconds - 2.0) <= 1 / 24
    assert facts.audio_codecs == ()
    assert progress[-1] == (48, 48) and len(progress) == 48


def test_encode_mp4_muxes_audio_to_the_video_length() -> None:
    audio = np.sin(np.linspace(0, 2000, 3 * 24000, dtype=np.float32))[None].repeat(2, axis=0)
    data = encode_mp4(gradient_frames(24, 64, 64), 24.0, audio=audio, sample_rate=24000)
    facts = probe_mp4(data)
    assert facts.audio_codecs == ("aac",)
    assert abs(facts.duration_seconds - 1.0) <= 1 / 24
    assert mp4_box_order(data).index("moov") < mp4_box_order(data).index("mdat")


def test_encode_mp4_pads_odd_sizes() -> None:
    data = encode_mp4(gradient_frames(5, 33, 65), 24.0)
    facts = probe_mp4(data)
    assert (facts.width, facts.height) == (66, 34)
    assert decoded_frame_sizes(data) == [(66, 34)] * 5


def test_encode_mp4_rejects_float_frames() -> None:
    with pytest.raises(InvalidArgument):
        encode_mp4(np.zeros((2, 8, 8, 3), dtype=np.float32), 24.0)


def test_poster_frame_is_the_middle_frame() -> None:
    frames = gradient_frames(5, 32, 48)
    poster = poster_frame(frames)
    assert poster.size == (48, 32)
    assert np.array_equal(np.asarray(poster), frames[2])


def test_ltx2_clip_to_mp4(ltx2_pipe: DiffusionPipeline) -> None:
    result = generate(ltx2_pipe, Recorder(), steps=2)
    keep = encoded_frame_count(FRAMES / FPS, FPS)
    data = encode_mp4(result.frames[:keep], result.fps, result.audio, result.sample_rate)
    facts = probe_mp4(data)
    assert facts.audio_codecs == ("aac",)
    assert (facts.width, facts.height, facts.frame_count) == (SIZE, SIZE, keep)
    assert len(decoded_frame_sizes(data)) == keep
