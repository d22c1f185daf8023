"""A tiny LTX-2 checkpoint (video with audio) built from random weights.

It keeps the real pipeline's component set and compression ratios (32x spatial,
8x temporal, 24 kHz stereo audio) so the server runs the LTX-2 code path,
audio muxing included, without downloading a checkpoint.
"""

from __future__ import annotations

import pathlib

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2Pipeline,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    GemmaTokenizer,
    SiglipVisionConfig,
)

SEED = 0
TEXT_DIM = 32
TEXT_LAYERS = 2
LATENT_CHANNELS = 8
AUDIO_LATENT_CHANNELS = 2
AUDIO_CHANNELS = 2
MEL_BINS = 8
# The audio VAE compresses mel bins by 4; the transformer sees channels x latent bins.
AUDIO_TOKEN_CHANNELS = AUDIO_LATENT_CHANNELS * MEL_BINS // 4
MAX_TOKENS = 256
AUDIO_SAMPLE_RATE = 24000

_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
_IMAGE_TOKENS = ("<start_of_image>", "<end_of_image>", "<image_soft_token>")
_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()"


def tokenizer_vocab() -> dict[str, int]:
    """Character-level vocabulary with byte fallback, so no text maps to ``<unk>``."""
    tokens = [*_SPECIALS, *_IMAGE_TOKENS]
    tokens += [f"<0x{byte:02X}>" for byte in range(256)]
    tokens.append("▁")
    tokens += list(_CHARS)
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer() -> GemmaTokenizer:
    """A Gemma tokenizer over a small vocabulary, built without any download."""
    return GemmaTokenizer(vocab=tokenizer_vocab(), merges=[], model_max_length=MAX_TOKENS)


def build_text_encoder(tokenizer: GemmaTokenizer) -> Gemma3ForConditionalGeneration:
    """Gemma 3 with a tiny vision tower: the pipeline's type checks require the multimodal class."""
    vocab = tokenizer.get_vocab()
    config = Gemma3Config(
        text_config=Gemma3TextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_DIM,
            intermediate_size=64,
            num_hidden_layers=TEXT_LAYERS,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=MAX_TOKENS,
            sliding_window=64,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        ),
        vision_config=SiglipVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
        ),
        mm_tokens_per_image=4,
        boi_token_index=vocab["<start_of_image>"],
        eoi_token_index=vocab["<end_of_image>"],
        image_token_index=vocab["<image_soft_token>"],
    )
    torch.manual_seed(SEED)
    return Gemma3ForConditionalGeneration(config)


def build_pipeline() -> LTX2Pipeline:
    """Assemble the tiny pipeline in memory with seeded random weights."""
    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(tokenizer)
    connector_heads, connector_head_dim = 4, 8
    torch.manual_seed(SEED)
    connectors = LTX2TextConnectors(
        caption_channels=TEXT_DIM,
        text_proj_in_factor=TEXT_LAYERS + 1,
        video_connector_num_attention_heads=connector_heads,
        video_connector_attention_head_dim=connector_head_dim,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=connector_heads,
        audio_connector_attention_head_dim=connector_head_dim,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_double_precision=False,
        rope_type="split",
    )
    torch.manual_seed(SEED)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=AUDIO_TOKEN_CHANNELS,
        audio_out_channels=AUDIO_TOKEN_CHANNELS,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        caption_channels=connector_heads * connector_head_dim,
        rope_double_precision=False,
        rope_type="split",
    )
    torch.manual_seed(SEED)
    # Four down blocks over a 4x4 patch: the ratios must be given explicitly,
    # the derived ones are wrong for this layout and decoding then fails.
    vae = AutoencoderKLLTX2Video(
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 16, 32),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
        patch_size=4,
        patch_size_t=1,
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
    )
    torch.manual_seed(SEED)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=AUDIO_CHANNELS,
        ch_mult=(1,),
        num_res_blocks=1,
        in_channels=AUDIO_CHANNELS,
        resolution=32,
        latent_channels=AUDIO_LATENT_CHANNELS,
        sample_rate=16000,
        mel_hop_length=160,
        mel_bins=MEL_BINS,
    )
    torch.manual_seed(SEED)
    # 6*5*2*2*2 = 240 samples per mel frame: 100 mel frames/s become 24 kHz.
    vocoder = LTX2Vocoder(
        in_channels=AUDIO_CHANNELS * MEL_BINS,
        hidden_channels=32,
        out_channels=AUDIO_CHANNELS,
        upsample_kernel_sizes=[12, 10, 4, 4, 4],
        upsample_factors=[6, 5, 2, 2, 2],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        output_sampling_rate=AUDIO_SAMPLE_RATE,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )
    return LTX2Pipeline(
        scheduler=scheduler,
        vae=vae,
        audio_vae=audio_vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=connectors,
        transformer=transformer,
        vocoder=vocoder,
    )


def build(folder: pathlib.Path) -> None:
    """Write the tiny pipeline to ``folder`` in the diffusers layout."""
    folder.mkdir(parents=True, exist_ok=True)
    build_pipeline().save_pretrained(folder)
