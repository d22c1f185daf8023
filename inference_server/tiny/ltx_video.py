"""A tiny LTX-Video checkpoint built from random weights.

It has the real pipeline's layout and compression (32x spatial, 8x temporal), so
the server, its tests and benchmarks exercise the same code paths as a real
checkpoint without downloading one. Its output is noise, by design.
"""

from __future__ import annotations

import pathlib

import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    FlowMatchEulerDiscreteScheduler,
    LTXPipeline,
    LTXVideoTransformer3DModel,
)
from transformers import T5Tokenizer

from inference_server.tiny import parts

SEED = 0
TEXT_DIM = 32
LATENT_CHANNELS = 8
MAX_TOKENS = 128

_WORDS = (
    "a the of in on and with at to is are cat dog bird fish horse person man woman "
    "child robot car ship spaceship video red blue green yellow white black orange "
    "purple golden sky sea ocean river city forest mountain night day sunset space "
    "star stars nebula colorful flying walking running dancing background light"
)
_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()"


def tokenizer_pieces() -> list[tuple[str, float]]:
    """Unigram pieces: specials, common words, then single characters.

    Whole words score higher than characters so prompts split into words where
    they can and never fall back to ``<unk>`` for plain ASCII text.
    """
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + word, -2.0) for word in dict.fromkeys(_WORDS.split())]
    pieces.append(("▁", -3.0))
    pieces += [(char, -6.0) for char in _CHARS]
    return pieces


def build_tokenizer() -> T5Tokenizer:
    """A T5 tokenizer over a small vocabulary, built without any download."""
    return T5Tokenizer(vocab=tokenizer_pieces(), extra_ids=0, model_max_length=MAX_TOKENS)


def build_pipeline() -> LTXPipeline:
    """Assemble the tiny pipeline in memory with seeded random weights."""
    tokenizer = build_tokenizer()
    torch.manual_seed(SEED)
    text_encoder = parts.t5_encoder(tokenizer, TEXT_DIM)
    torch.manual_seed(SEED)
    transformer = LTXVideoTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=1,
        caption_channels=TEXT_DIM,
    )
    torch.manual_seed(SEED)
    # patch_size 4 times three scaling blocks gives the real 32x / 8x compression.
    vae = AutoencoderKLLTXVideo(
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )
    return LTXPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def build(folder: pathlib.Path) -> None:
    """Write the tiny pipeline to ``folder`` in the diffusers layout."""
    folder.mkdir(parents=True, exist_ok=True)
    build_pipeline().save_pretrained(folder)
