"""Components that several small pipelines share, at the one small size they all use.

FLUX, SD3 and SDXL read prompts through the same small CLIP text tower, FLUX,
SD3, LTX-Video and Wan through the same small T5 (Wan's is the multilingual
UMT5, the same layers under another class), and FLUX, SD3 and SDXL decode
through the same 8x image VAE. Built in one place, their sizes cannot drift
apart between families. No function here seeds the random weights: each
pipeline seeds before each component, so that its build is the same every time.
"""

from __future__ import annotations

from typing import Any

from diffusers import AutoencoderKL
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    PreTrainedTokenizerBase,
    T5Config,
    T5EncoderModel,
    UMT5Config,
    UMT5EncoderModel,
)


def clip_text_config(vocab_size: int, dim: int) -> CLIPTextConfig:
    """Two layers of four heads; the special-token ids of ``build_clip_tokenizer``'s vocabulary
    (the pooled output is read at the end token)."""
    return CLIPTextConfig(
        hidden_size=dim,
        projection_dim=dim,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        vocab_size=vocab_size,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def clip_text_encoder(vocab_size: int, dim: int) -> CLIPTextModel:
    return CLIPTextModel(clip_text_config(vocab_size, dim))


def clip_text_encoder_with_projection(vocab_size: int, dim: int) -> CLIPTextModelWithProjection:
    """The CLIP whose pooled output is projected (SDXL's second, both of SD3's)."""
    return CLIPTextModelWithProjection(clip_text_config(vocab_size, dim))


def _t5_values(tokenizer: PreTrainedTokenizerBase, d_model: int) -> dict[str, Any]:
    """T5 v1.1's gated-GELU layers, two of four heads, over ``tokenizer``'s vocabulary."""
    return {
        "vocab_size": len(tokenizer),
        "d_model": d_model,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 2,
        "num_heads": 4,
        "feed_forward_proj": "gated-gelu",
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def t5_encoder(tokenizer: PreTrainedTokenizerBase, d_model: int) -> T5EncoderModel:
    return T5EncoderModel(T5Config(**_t5_values(tokenizer, d_model)))


def umt5_encoder(tokenizer: PreTrainedTokenizerBase, d_model: int) -> UMT5EncoderModel:
    """Wan's text encoder class: UMT5, with the small T5's sizes."""
    return UMT5EncoderModel(UMT5Config(**_t5_values(tokenizer, d_model)))


def kl_vae(
    latent_channels: int,
    *,
    sample_size: int,
    scaling_factor: float = 0.18215,
    shift_factor: float | None = None,
    quant_convs: bool = True,
) -> AutoencoderKL:
    """The 8x image VAE: four blocks of 8 channels, one layer each.

    The keywords are the published checkpoint's own values (the defaults are
    ``AutoencoderKL``'s, as SDXL's VAE keeps them): the latent statistics the
    pipeline scales by, and whether the 1x1 convolutions around the latent
    exist (FLUX and SD3 have none).
    """
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=quant_convs,
        use_post_quant_conv=quant_convs,
    )


def clip_image_processor(size: int) -> CLIPImageProcessor:
    """CLIP's image processor (Shap-E's, Wan image-to-video's), for a tower of ``size`` pixels."""
    return CLIPImageProcessor(
        crop_size={"height": size, "width": size},
        size={"shortest_edge": size},
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
        resample=3,
    )
