"""What every kind of output declares, once: body, model checks, price, request, answer.

A kind is one subclass of :class:`GenerationKind` (``image.py``, ``video.py``,
``three_d.py``); the routes, the job runner, the catalogue listing, the
projects page and the housekeeping sweep all read the kind from there.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, TypeVar

from google.protobuf.message import Message
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

from genserve.vocabulary import Kind
from rest_bridge.edge.errors import validation_error
from rest_bridge.link.catalogue import ModelEntry
from rest_bridge.settings import BridgeSettings
from storage.models import Asset, Generation

if TYPE_CHECKING:
    from rest_bridge.state import BridgeState


def _whole(value: object) -> object:
    """``2.0`` read as ``2``; any other value is left for the strict integer check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeNumber = Annotated[StrictInt, BeforeValidator(_whole)]
"""A count or whole seconds: an integer, or a JSON number with nothing after the point
(the document types ``num_images`` and ``duration`` as numbers); ``2.5``, ``"2"`` and
``true`` are refused."""


NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
"""What no string field may hold: NUL (PostgreSQL cannot store it), the other C0 control
characters but tab and line breaks, DEL, and lone surrogates (not encodable as UTF-8, so
neither storable nor sendable over gRPC)."""


class StrictBody(BaseModel):
    """The document's fields, strictly typed; unknown fields refused; strings are text."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _text_only(cls, value: object) -> object:
        if isinstance(value, str) and NOT_TEXT.search(value):
            raise ValueError(
                "must be text: no NUL, control characters (tab and line breaks aside) "
                "or lone surrogates"
            )
        return value


DEFAULT_PREVIEW_EVERY = 2

Preview = StrictBool | Annotated[StrictInt, Field(ge=0, le=200)]
"""Live previews in the event stream: ``true`` (every 2 steps), a step interval, or off."""


def preview_every(value: bool | int) -> int:
    """The protobuf ``preview_every`` of a body's ``preview`` (0: none)."""
    if isinstance(value, bool):
        return DEFAULT_PREVIEW_EVERY if value else 0
    return value


class GenerationBody(StrictBody):
    """Fields every generation accepts beyond the document's (optional additions)."""

    webhook_url: StrictStr | None = Field(None, min_length=1, max_length=2048)


def fast_allowed(fast: bool, model: ModelEntry) -> None:
    """A 422 for ``fast`` on a model without a step cache (``ListModels``' ``step_cache``)."""
    if fast and not model.step_cache:
        raise validation_error(
            "fast", f"{model.name} has no step cache: fast is not available for it"
        )


def one_of(field_name: str, value: str, allowed: tuple[str, ...], model: ModelEntry) -> None:
    """A 422 when the model does not accept ``value`` (an empty list accepts anything)."""
    if allowed and value not in allowed:
        raise validation_error(
            field_name, f"{model.name} accepts {', '.join(allowed)}; got {value!r}"
        )


BodyT = TypeVar("BodyT", bound=GenerationBody)


@dataclass(frozen=True)
class InputFile:
    """A caller's input (an image, a mask) kept with the project's outputs as an asset of
    role ``role``, so the project can be made again; removed with it."""

    role: str
    data: bytes
    format: str
    """png, jpeg or webp."""
    width: int
    height: int


@dataclass
class GenerationOutcome:
    """What a finished RPC produced, before the answer is built from it."""

    generation: Generation
    assets: list[Asset]
    remaining_points: int
    generation_time_ms: int
    seed: int
    data: dict[str, Any] = field(default_factory=dict)

    def primaries(self) -> list[Asset]:
        return [a for a in self.assets if a.role == "primary"]

    def preview(self, index: int = 0) -> Asset | None:
        for a in self.assets:
            if a.role == "preview" and a.index == index:
                return a
        return None


class GenerationKind(ABC, Generic[BodyT]):
    """One kind of output, declared once."""

    kind: ClassVar[Kind]
    path: ClassVar[str]
    """Its route, ``POST {path}`` (the last segment is its OpenAPI tag)."""
    operation: ClassVar[str]
    """The route's name, from which its OpenAPI ``operationId`` is made."""
    body: type[BodyT]
    rpc: ClassVar[str]
    """The ``InferenceService`` method that generates it."""
    file_stem: ClassVar[str]
    """Output file names: ``{file_stem}-{generation id}-{n}.{ext}``."""
    preview_stem: ClassVar[str]
    answer_model: ClassVar[type[BaseModel]]
    """The ``data`` of a 200, as ``/openapi.json`` describes it."""

    @abstractmethod
    def timeout_s(self, settings: BridgeSettings) -> float:
        """The RPC's deadline, and with a grace the age after which a row is abandoned."""

    @abstractmethod
    def price(self, settings: BridgeSettings, body: BodyT, model: ModelEntry) -> int:
        """Points this (settled) request costs on this model."""

    @abstractmethod
    def price_table(self, settings: BridgeSettings) -> dict[str, Any]:
        """How this kind is priced, as ``GET /api/v1/models`` shows it."""

    def model_name(self, body: BodyT) -> str | None:
        """The model the body names; None asks for the kind's default."""
        name: str | None = getattr(body, "model", None)
        return name

    def prompt(self, body: BodyT) -> str:
        text: str = getattr(body, "prompt", "")
        return text

    def settle(self, body: BodyT, model: ModelEntry) -> BodyT:
        """The body as this model will run it: what it left out filled in from the model's
        entry, and a 422 for what the model does not accept; before any debit.

        The one check of a body against the catalogue: what is priced, sent, recorded
        and answered is the body this returns.
        """
        return body

    def fetches(self, body: BodyT) -> bool:
        """Whether ``prepare`` has work to do for this body (an input image to fetch or decode):
        then the balance is read first, so a caller who cannot pay costs nothing."""
        return False

    async def prepare(self, state: BridgeState, body: BodyT) -> Any:
        """Inputs that take work to get (a fetched image), after every cheap check."""
        return None

    @abstractmethod
    def params(self, body: BodyT) -> dict[str, Any]:
        """What is recorded with the generation (and shown with its project)."""

    @abstractmethod
    def request(self, body: BodyT, model: ModelEntry, rid: str, prepared: Any) -> Message:
        """The protobuf request for ``rpc``."""

    @abstractmethod
    def output(
        self, state: BridgeState, body: BodyT, model: ModelEntry, outcome: GenerationOutcome
    ) -> dict[str, Any]:
        """This kind's part of the answer: its files, in the document's shape."""

    def answer(
        self, state: BridgeState, body: BodyT, model: ModelEntry, outcome: GenerationOutcome
    ) -> dict[str, Any]:
        """The ``data`` of the success envelope: the output, then what every kind reports."""
        return {
            **self.output(state, body, model, outcome),
            "generation_time": outcome.generation_time_ms,
            "remaining_points": outcome.remaining_points,
            "request_id": outcome.generation.request_id,
        }

    @abstractmethod
    def describe(self, model: ModelEntry) -> dict[str, Any]:
        """What ``GET /api/v1/models`` adds for one model of this kind."""

    def metadata(self, gen: Generation) -> dict[str, Any]:
        """What a project of this kind adds to its ``metadata`` object."""
        return {}

    def inputs(self, body: BodyT, prepared: Any) -> list[InputFile]:
        """The inputs kept as assets of the project (none by default)."""
        return []

    def file_name(self, generation_id: str, index: int, preview: bool, source_name: str) -> str:
        """File names in the document's style, carrying the generation id."""
        ext = source_name.rsplit(".", 1)[-1] if "." in source_name else "bin"
        stem = self.preview_stem if preview else self.file_stem
        return f"{stem}-{generation_id}-{index + 1}.{ext}"
