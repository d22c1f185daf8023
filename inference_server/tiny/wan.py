"""Tiny Wan 2.1 pipelines built from random weights: text to video (``WanPipeline``)
and image to video (``WanImageToVideoPipeline``).

The component classes are those of ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``: a
``WanTransformer3DModel`` over 1x2x2 patches, the Wan VAE (8x in space, 4x in
time, 16 channels, the published latent statistics), UMT5 as text encoder, and
UniPC on flow sigmas shifted by 3. Only the sizes shrink, so the server runs
Wan's code path (``4k+1`` frames, sides in multiples of 16) without a download.

The image-to-video build has ``Wan-AI/Wan2.1-I2V-14B-480P-Diffusers``'s: the
same VAE, text encoder and scheduler, a CLIP vision tower with projection and
its image processor, and a transformer that reads the first frame twice: its
latents and a mask beside the noise (36 input channels: 16 + 4 + 16) and the
CLIP tower's penultimate hidden states through added key/value projections.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLWan,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from inference_server.tiny import ltx_video, parts

SEED = 0
TEXT_DIM = 32
LATENT_CHANNELS = 16
"""The VAE's latent statistics (class defaults, the published values) have 16 entries."""
HEADS = 2
HEAD_DIM = 12
"""Head size 12: the rotary embedding gives 4 channels each to time, height and width."""
IMAGE_SIZE = 32
"""The side the CLIP tower sees (224 published)."""
IMAGE_DIM = 32
"""The CLIP tower's width, which the transformer's image projection reads (1280 published)."""
CONDITION_CHANNELS = 4
"""The first-frame mask: one channel per frame of a latent frame (the VAE's 4x in time)."""


def _transformer(in_channels: int, image_dim: int | None = None) -> WanTransformer3DModel:
    """Two blocks of two heads; with ``image_dim``, the image-to-video transformer (the
    CLIP states through key/value projections as wide as the attention)."""
    torch.manual_seed(SEED)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=HEADS,
        attention_head_dim=HEAD_DIM,
        in_channels=in_channels,
        out_channels=LATENT_CHANNELS,
        text_dim=TEXT_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        image_dim=image_dim,
        added_kv_proj_dim=HEADS * HEAD_DIM if image_dim is not None else None,
        rope_max_seq_len=64,
    )


def _vae() -> AutoencoderKLWan:
    torch.manual_seed(SEED)
    return AutoencoderKLWan(
        base_dim=4,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def _scheduler() -> UniPCMultistepScheduler:
    """UniPC on flow sigmas shifted by 3: both published checkpoints' (the 480p setting)."""
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=3.0,
    )


def build_pipeline() -> WanPipeline:
    """Assemble the tiny pipeline in memory with seeded random weights."""
    tokenizer = ltx_video.build_tokenizer()
    torch.manual_seed(SEED)
    text_encoder = parts.umt5_encoder(tokenizer, TEXT_DIM)
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=_transformer(LATENT_CHANNELS),
        vae=_vae(),
        scheduler=_scheduler(),
    )


def build_i2v_pipeline() -> WanImageToVideoPipeline:
    """The image-to-video pipeline in memory: the first frame's latents and mask join the
    noise (16 + 4 + 16 channels), and its CLIP features join the prompt's."""
    tokenizer = ltx_video.build_tokenizer()
    torch.manual_seed(SEED)
    text_encoder = parts.umt5_encoder(tokenizer, TEXT_DIM)
    torch.manual_seed(SEED)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            image_size=IMAGE_SIZE,
            patch_size=8,
            hidden_size=IMAGE_DIM,
            intermediate_size=37,
            projection_dim=IMAGE_DIM,
            num_hidden_layers=2,
            num_attention_heads=4,
            hidden_act="gelu",
        )
    )
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        image_processor=parts.clip_image_processor(IMAGE_SIZE),
        transformer=_transformer(2 * LATENT_CHANNELS + CONDITION_CHANNELS, IMAGE_DIM),
        vae=_vae(),
        scheduler=_scheduler(),
    )


def build(folder: Path) -> None:
    """Write the tiny pipeline to ``folder`` in the diffusers layout."""
    folder.mkdir(parents=True, exist_ok=True)
    build_pipeline().save_pretrained(folder)


def build_i2v(folder: Path) -> None:
    """Write the tiny image-to-video pipeline to ``folder`` in the diffusers layout."""
    folder.mkdir(parents=True, exist_ok=True)
    build_i2v_pipeline().save_pretrained(folder)
