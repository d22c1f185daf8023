"""What every kind of output declares, once: body, model checks, price, request, answer.

A kind is one subclass of :class:`GenerationKind` (``image.py``, ``video.py``,
``three_d.py``); the routes, the job runner, the catalogue listing, the
projects page and the housekeeping sweep all read the kind from there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from genserve.vocabulary import Kind
from rest_bridge.catalogue import ModelEntry
from rest_bridge.errors import validation_error
from rest_bridge.settings import BridgeSettings
from storage.models import Asset, Generation

if TYPE_CHECKING:
    from rest_bridge.state import BridgeState


class StrictBody(BaseModel):
    """The document's fields, strictly typed; unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class GenerationBody(StrictBody):
    """Fields every generation accepts beyond the document's (optional additions)."""

    webhook_url: StrictStr | None = Field(None, min_length=1, max_length=2048)


def one_of(field_name: str, value: str, allowed: tuple[str, ...], model: ModelEntry) -> None:
    """A 422 when the model does not accept ``value`` (an empty list accepts anything)."""
    if allowed and value not in allowed:
        raise validation_error(
            field_name, f"{model.name} accepts {', '.join(allowed)}; got {value!r}"
        )


BodyT = TypeVar("BodyT", bound=GenerationBody)


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
    def price(self, settings: BridgeSettings, body: BodyT) -> int:
        """Points this request costs."""

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

    def check(self, body: BodyT, model: ModelEntry) -> None:
        """Refuses (422) what this model does not accept, before any debit."""

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

    def file_name(self, generation_id: str, index: int, preview: bool, source_name: str) -> str:
        """File names in the document's style, carrying the generation id."""
        ext = source_name.rsplit(".", 1)[-1] if "." in source_name else "bin"
        stem = self.preview_stem if preview else self.file_stem
        return f"{stem}-{generation_id}-{index + 1}.{ext}"
