"""``bench.published``: the published architectures, checked without their weights.

A wrong value in a family's table would make the GPU benchmark measure another
model: each family's links reproduce the published configuration at scale 1,
and the components whose parameter counts are well known have them exactly
(counted on the meta device, where a 12B transformer costs nothing to build).
A small build saves and loads back like a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionXLPipeline

from bench import published
from bench.published import FAMILIES, build, component_configs


def _plain(value: object) -> object:
    """Tuples and lists alike, as a config.json holds them."""
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_scale_one_is_the_published_configuration(family: str) -> None:
    """The values the links derive (cross-attention widths, pooled sizes, ...) are the
    published ones: nothing is scaled or re-derived differently at scale 1."""
    assert _plain(component_configs(family, 1.0, trim=False)) == _plain(FAMILIES[family].components)


def test_trimmed_values_are_the_only_departures() -> None:
    """LTX-2's text encoder loses depth at full scale, and its connectors read that depth."""
    trimmed = component_configs("ltx-2", 1.0)
    published_ = FAMILIES["ltx-2"].components
    assert trimmed["text_encoder"][1]["text_config"]["num_hidden_layers"] == 8
    assert trimmed["connectors"][1]["text_proj_in_factor"] == 9
    for name in ("transformer", "vae", "audio_vae", "vocoder"):
        assert _plain(trimmed[name]) == _plain(published_[name])


# Published parameter counts (the checkpoints' safetensors): SDXL's UNet and text
# encoders, T5 v1.1 XXL's encoder, FLUX.1's transformer less the guidance embedding
# that only [dev] has (11,901,408,320 - 10,229,760).
KNOWN = [
    ("sdxl", "unet", 2_567_463_684),
    ("sdxl", "text_encoder", 123_060_480),
    ("sdxl", "text_encoder_2", 694_659_840),
    ("flux-schnell", "text_encoder_2", 4_762_310_656),
    ("flux-schnell", "transformer", 11_891_178_560),
]


@pytest.mark.parametrize(("family", "component", "count"), KNOWN)
def test_published_parameter_counts(family: str, component: str, count: int) -> None:
    configs = component_configs(family)
    cls, config = configs[component]
    tokenizers = {c: published._tokenizer(c) for c, _ in configs.values() if "Tokenizer" in c}
    with torch.device("meta"):
        model = published._model(cls, published._local_token_ids(cls, config, tokenizers))
    assert sum(p.numel() for p in model.parameters()) == count


def test_a_small_build_loads_back(tmp_path: Path) -> None:
    """SDXL at a twentieth: whole heads and norm groups, the links derived, the layout saved."""
    build("sdxl", tmp_path, scale=0.05, dtype="float32", device="cpu")
    pipe = StableDiffusionXLPipeline.from_pretrained(tmp_path)
    unet = pipe.unet.config
    assert list(unet.block_out_channels) == [64, 128, 256]  # 320 x 0.05 -> one 64-wide head
    assert list(unet.attention_head_dim) == [1, 2, 4]
    text, text_2 = pipe.text_encoder.config, pipe.text_encoder_2.config
    assert unet.cross_attention_dim == text.hidden_size + text_2.hidden_size
    assert unet.projection_class_embeddings_input_dim == 6 * 256 + text_2.projection_dim
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler.config.timestep_spacing == "leading"
    assert pipe.unet.dtype == torch.float32
