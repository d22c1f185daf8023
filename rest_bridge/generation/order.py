"""A validated request, ready to debit and run: its kind, model, price and protobuf request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from rest_bridge.edge.errors import ApiError, validation_error
from rest_bridge.generation.base import GenerationBody, GenerationKind, InputFile
from rest_bridge.link.catalogue import ModelEntry
from rest_bridge.state import BridgeState
from storage import points


@dataclass
class GenerationOrder:
    """Everything needed to run and record the work, built once from the body."""

    unit: GenerationKind[Any]
    body: GenerationBody
    model: ModelEntry
    request: Message
    cost: int
    timeout_s: float
    request_id: str
    inputs: list[InputFile] = field(default_factory=list)
    """The caller's input files, stored as assets with the outputs."""

    @property
    def prompt(self) -> str:
        return self.unit.prompt(self.body)

    @property
    def params(self) -> dict[str, Any]:
        params = self.unit.params(self.body)
        if self.body.webhook_url:
            params["webhook_url"] = self.body.webhook_url
        return params


def _unavailable(state: BridgeState, message: str) -> ApiError:
    return ApiError(
        503,
        "inference_unavailable",
        message,
        headers={"Retry-After": str(state.settings.retry_after_s)},
    )


def _lookup(state: BridgeState, unit: GenerationKind[Any], name: str | None) -> ModelEntry | None:
    catalogue = state.client.catalogue
    return catalogue.get(name, unit.kind) if name is not None else catalogue.default(unit.kind)


def _servable(state: BridgeState, model: ModelEntry | None) -> bool:
    if model is None:
        return False
    targets = state.client.catalogue.targets_for(model.name, model.kind)
    return any(state.client.links[t].serving for t in targets)


async def find_model(state: BridgeState, unit: GenerationKind[Any], name: str | None) -> ModelEntry:
    """The model a request names (or its kind's default), as the inference servers listed it.

    A name no serving target knows refreshes the catalogue once first, since a
    server may have come since the last look. An unknown name is a 422 only
    when every target has answered; otherwise the silent one may serve it (503).
    """
    model = _lookup(state, unit, name)
    if not _servable(state, model):
        await state.client.refresh()
        model = _lookup(state, unit, name)
    catalogue = state.client.catalogue
    if model is None:
        if not catalogue.complete:
            raise _unavailable(state, "No inference server is serving yet; try again shortly.")
        if name is None:
            raise _unavailable(state, f"This server has no {unit.kind} model configured.")
        names = ", ".join(catalogue.names(unit.kind)) or "none"
        raise validation_error("model", f"unknown {unit.kind} model; available: {names}")
    if not _servable(state, model):
        raise _unavailable(
            state, f"No inference server serving {model.name} is up; try again shortly."
        )
    return model


def insufficient_points(needed: int, balance: int) -> ApiError:
    return ApiError(
        402, "insufficient_points", f"This needs {needed} points and the balance is {balance}."
    )


async def order_for(
    state: BridgeState,
    unit: GenerationKind[Any],
    body: GenerationBody,
    rid: str,
    account_id: int,
) -> GenerationOrder:
    """Every check of the request, cheap ones first; nothing is debited or sent yet.

    When ``prepare`` has work to do (an input image to fetch and decode), the
    balance is read before it, so a caller who cannot pay costs nothing: 402 at
    once. Without, that read would only repeat the debit's own check: the debit
    stays in ``run.begin``, conditional on the balance at that moment, and
    answers the same 402 before any RPC (one database round trip fewer a request).
    """
    model = await find_model(state, unit, unit.model_name(body))
    body = unit.settle(body, model)
    cost = unit.price(state.settings, body, model)
    if unit.fetches(body):
        balance = await state.db(points.balance, account_id)
        if balance < cost:
            raise insufficient_points(cost, balance)
    prepared = await unit.prepare(state, body)
    return GenerationOrder(
        unit=unit,
        body=body,
        model=model,
        request=unit.request(body, model, rid, prepared),
        cost=cost,
        timeout_s=unit.timeout_s(state.settings),
        request_id=rid,
        inputs=unit.inputs(body, prepared),
    )
