"""What models exist and what each accepts, as the inference servers said through ``ListModels``.

The bridge never reads a model file: each target is asked at start-up and
whenever it comes back, and its answer replaces what it said before. A model
served by several targets is one entry that knows all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from genserve.vocabulary import Kind


def _known(values: Iterable[int], words: Mapping[Any, str]) -> tuple[str, ...]:
    """The vocabulary's words for wire enum values, leaving out those this bridge does not know."""
    return tuple(words[v] for v in values if v in words)


@dataclass(frozen=True)
class ModelEntry:
    """One public model name, with everything a request for it is validated against.

    Kind-agnostic: each field is what ``ListModels`` said (empty where a kind has no
    such option); each kind's unit (``generation/``) reads the fields it checks.
    """

    name: str
    kind: Kind
    is_default: bool
    default_steps: int = 0
    default_guidance: float = 0.0
    max_steps: int = 0
    min_guidance: float = 0.0
    max_guidance: float = 0.0
    max_pixels: int = 0
    image_modes: tuple[str, ...] = ()
    loras: tuple[tuple[str, float], ...] = ()
    """Adapters a request may apply: name and default scale."""
    image_to_video: bool = False
    first_frame_required: bool = False
    """Videos: the model makes video only from a first frame (image_url / image_base64)."""
    native_width: int = 0
    native_height: int = 0
    size_factor: int = 0
    frame_rate: float = 0.0
    aspect_ratios: tuple[str, ...] = ()
    resolutions: tuple[str, ...] = ()
    min_duration: int = 0
    max_duration: int = 0
    default_duration: int = 0
    output_formats: tuple[str, ...] = ()
    max_images: int = 0
    texture_qualities: tuple[str, ...] = ()
    texture_alignments: tuple[str, ...] = ()
    orientations: tuple[str, ...] = ()
    step_cache: str = ""
    """The step cache a fast request runs with; empty: fast is not available."""
    on_device: bool = False
    """Whether the answering server had the model's weights on its device (routing prefers it)."""

    @classmethod
    def from_pb(cls, info: pb.ModelInfo) -> ModelEntry | None:
        """The entry a ``ModelInfo`` describes; None for a kind this bridge does not know."""
        kind = vocab.KIND_FROM_PB.get(info.kind)
        if kind is None or not info.name:
            return None
        return cls(
            name=info.name,
            kind=kind,
            is_default=info.is_default,
            default_steps=info.default_steps,
            default_guidance=info.default_guidance,
            max_steps=info.max_steps,
            min_guidance=info.min_guidance,
            max_guidance=info.max_guidance,
            max_pixels=info.max_pixels,
            image_modes=tuple(info.image_modes),
            image_to_video=info.image_to_video,
            first_frame_required=info.first_frame_required,
            loras=tuple((x.name, round(x.default_scale, 4)) for x in info.loras),
            native_width=info.native_width,
            native_height=info.native_height,
            size_factor=info.size_factor,
            frame_rate=info.frame_rate,
            aspect_ratios=tuple(info.aspect_ratios),
            resolutions=tuple(info.resolutions),
            min_duration=info.min_duration_seconds,
            max_duration=info.max_duration_seconds,
            default_duration=info.default_duration_seconds,
            output_formats=_known(info.output_formats, vocab.OUTPUT_FORMAT_FROM_PB),
            max_images=info.max_images,
            texture_qualities=_known(info.texture_qualities, vocab.TEXTURE_QUALITY_FROM_PB),
            texture_alignments=_known(info.texture_alignments, vocab.TEXTURE_ALIGNMENT_FROM_PB),
            orientations=_known(info.orientations, vocab.ORIENTATION_FROM_PB),
            step_cache=info.step_cache,
            on_device=info.state == pb.MODEL_STATE_ON_DEVICE
            or (info.state == pb.MODEL_STATE_UNSPECIFIED and info.loaded),
        )


@dataclass
class Catalogue:
    """Every target's last ``ListModels`` answer, merged by public name."""

    targets: list[str]
    _by_target: dict[str, list[ModelEntry]] = field(default_factory=dict)

    def update(self, target: str, entries: list[ModelEntry]) -> None:
        self._by_target[target] = list(entries)

    def forget(self, target: str) -> None:
        self._by_target.pop(target, None)

    @property
    def listed(self) -> set[str]:
        """The targets that have answered at least once."""
        return set(self._by_target)

    @property
    def complete(self) -> bool:
        """Whether every target has answered at least once."""
        return all(t in self._by_target for t in self.targets)

    def models(self) -> list[ModelEntry]:
        """One entry per (kind, name), in the order the targets listed them."""
        seen: dict[tuple[str, str], ModelEntry] = {}
        for target in self.targets:
            for entry in self._by_target.get(target, []):
                seen.setdefault((entry.kind, entry.name), entry)
        return list(seen.values())

    def get(self, name: str, kind: Kind) -> ModelEntry | None:
        for entry in self.models():
            if entry.name == name and entry.kind == kind:
                return entry
        return None

    def default(self, kind: Kind) -> ModelEntry | None:
        of_kind = [m for m in self.models() if m.kind == kind]
        return next((m for m in of_kind if m.is_default), of_kind[0] if of_kind else None)

    def names(self, kind: Kind) -> list[str]:
        return [m.name for m in self.models() if m.kind == kind]

    def warm_targets(self, name: str, kind: Kind) -> set[str]:
        """The targets that last said they have this model on their device."""
        return {
            t
            for t in self.targets
            if any(
                e.name == name and e.kind == kind and e.on_device
                for e in self._by_target.get(t, [])
            )
        }

    def targets_for(self, name: str, kind: Kind) -> list[str]:
        """The targets that said they serve this model."""
        return [
            t
            for t in self.targets
            if any(e.name == name and e.kind == kind for e in self._by_target.get(t, []))
        ]
