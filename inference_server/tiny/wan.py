"""A tiny Wan 2.1 text-to-video pipeline (``WanPipeline``) built from random weights.

The component classes are those of ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``: a
``WanTransformer3DModel`` over 1x2x2 patches, the Wan VAE (8x in space, 4x in
time, 16 channels, the published latent statistics), UMT5 as text encoder, and
UniPC on flow sigmas shifted by 3. Only the sizes shrink, so the server runs
Wan's code path (``4k+1`` frames, sides in multiples of 16) without a download.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

from inference_server.tiny import ltx_video, parts

SEED = 0
TEXT_DIM = 32
LATENT_CHANNELS = 16
"""The VAE's latent statistics (class defaults, the published values) have 16 entries."""


def build_pipeline() -> WanPipeline:
    """Assemble the tiny pipeline in memory with seeded random weights."""
    tokenizer = ltx_video.build_tokenizer()
    torch.manual_seed(SEED)
    text_encoder = parts.umt5_encoder(tokenizer, TEXT_DIM)
    torch.manual_seed(SEED)
    # Head size 12: the rotary embedding gives 4 channels each to time, height and width.
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        text_dim=TEXT_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=64,
    )
    torch.manual_seed(SEED)
    vae = AutoencoderKLWan(
        base_dim=4,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=3.0,
    )
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
    )


def build(folder: Path) -> None:
    """Write the tiny pipeline to ``folder`` in the diffusers layout."""
    folder.mkdir(parents=True, exist_ok=True)
    build_pipeline().save_pretrained(folder)
