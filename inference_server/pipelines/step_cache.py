"""Step caches for diffusion transformers: diffusers' own hooks, on for one call at a time.

A model's entry may name a cache (``first_block``, ``taylorseer`` or
``magcache``, with its threshold or interval); a request that asks for
``fast`` runs with it. The hooks go on the denoiser (a diffusers
``CacheMixin``: FLUX, SD3, Wan, LTX transformers) just before the pipeline
call and come off right after, so a call without ``fast`` is exactly the full
computation, and the hooks' state never outlives a call (MagCache's ratios are
fitted to the call's step count, which differs between requests).

A UNet (SDXL) has no such hooks: the model is served without its cache, and a
warning naming it is logged when it loads.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

CacheKind = Literal["first_block", "taylorseer", "magcache"]


@dataclass(frozen=True)
class StepCache:
    """One model's step cache: which, and how eager."""

    kind: CacheKind
    threshold: float | None = None
    """first_block, magcache: the change below which a step reuses the cached blocks."""
    interval: int | None = None
    """taylorseer: steps predicted between two computed in full."""
    mag_ratios: tuple[float, ...] | None = None
    """magcache: the checkpoint's magnitude ratios (unset: FLUX's, which diffusers ships)."""


DEFAULT_THRESHOLD: dict[CacheKind, float] = {"first_block": 0.05, "magcache": 0.06}
DEFAULT_INTERVAL = 5


def denoiser(pipe: Any) -> Any | None:
    """The pipeline's transformer when diffusers' cache hooks apply to it, else None."""
    from diffusers.models.cache_utils import CacheMixin

    model = getattr(pipe, "transformer", None)
    return model if isinstance(model, CacheMixin) else None


def check_applies(pipe: Any, name: str, cache: StepCache | None) -> StepCache | None:
    """``cache`` where this pipeline can use it; None, with a warning naming the model, if not."""
    if cache is None:
        return None
    if denoiser(pipe) is None:
        log.warning(
            "%s: step cache %r refused: its denoiser (%s) is not a diffusion transformer, "
            "so diffusers' cache hooks do not apply; fast requests run in full",
            name,
            cache.kind,
            type(getattr(pipe, "unet", getattr(pipe, "transformer", None))).__name__,
        )
        return None
    return cache


def hook_config(cache: StepCache, steps: int) -> Any:
    """The diffusers config of ``cache`` for a call of ``steps`` denoising steps."""
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    if cache.kind == "first_block":
        return FirstBlockCacheConfig(threshold=_threshold(cache))
    if cache.kind == "taylorseer":
        interval = cache.interval or DEFAULT_INTERVAL
        # Lite: on a predicted step every block is skipped and the output projection is
        # extrapolated; the full variant only predicts attention, which saves little.
        return TaylorSeerCacheConfig(
            cache_interval=interval,
            disable_cache_before_step=min(3, max(1, steps // 4)),
            use_lite_mode=True,
        )
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

    ratios = list(cache.mag_ratios) if cache.mag_ratios else FLUX_MAG_RATIOS
    return MagCacheConfig(threshold=_threshold(cache), num_inference_steps=steps, mag_ratios=ratios)


def _threshold(cache: StepCache) -> float:
    return cache.threshold if cache.threshold is not None else DEFAULT_THRESHOLD[cache.kind]


@contextlib.contextmanager
def cached_steps(pipe: Any, cache: StepCache | None, steps: int) -> Iterator[None]:
    """Runs the body with ``cache`` hooked on the pipeline's transformer (None: as it is)."""
    model = denoiser(pipe) if cache is not None else None
    if model is None or cache is None:
        yield
        return
    model.enable_cache(hook_config(cache, steps))
    try:
        yield
    finally:
        model.disable_cache()
