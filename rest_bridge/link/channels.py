"""The bridge's gRPC channels to the inference servers, and the one status-to-REST table."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from genserve import vocabulary as vocab
from genserve._internal.logs import request_id_var
from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from rest_bridge.background import Periodic
from rest_bridge.edge.errors import ApiError
from rest_bridge.edge.metrics import METRICS
from rest_bridge.link.catalogue import Catalogue, ModelEntry
from rest_bridge.link.credentials import LinkSecurity

log = logging.getLogger(__name__)

ProgressHook = Callable[[pb.Progress], Awaitable[None]]

SERVICE = "genserve.inference.v1.InferenceService"


MAX_PUBLIC_DETAILS = 300
_TRACEBACK = re.compile(r'Traceback \(most recent call last\)|^\s*File "', re.MULTILINE)
# An absolute or home-relative path (POSIX or Windows), a file: URL, or ./ and ../ paths;
# only where a token starts, so URLs and "a/b" values stay.
_PATH = re.compile(
    r"""(?<![\w:/.\\-])(?:file:/|~/|\.{1,2}/|/(?=[^\s'"(),;])|[A-Za-z]:[\\/]|\\\\)[^\s'"(),;]*"""
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def public_details(details: str) -> str:
    """An inference server's validation message as a client may read it.

    Our inference server writes INVALID_ARGUMENT and NOT_FOUND details for clients
    ("steps must be between 1 and 200"); even so, anything that looks like a
    traceback is cut off, paths are replaced by ``[path]``, only the first line is
    kept and it is shortened. Empty when nothing readable is left.
    """
    match = _TRACEBACK.search(details)
    text = details[: match.start()] if match else details
    text = text.strip().splitlines()[0] if text.strip() else ""
    text = _CONTROL.sub(" ", _PATH.sub("[path]", text)).strip(" :")
    if len(text) > MAX_PUBLIC_DETAILS:
        text = text[: MAX_PUBLIC_DETAILS - 1].rstrip() + "…"
    return text if any(c.isalnum() for c in text.replace("[path]", "")) else ""


def rest_error(err: grpc.aio.AioRpcError | grpc.RpcError, retry_after: int) -> ApiError:
    """Maps an RPC failure to the envelope; the only place that does.

    The message is public: a fixed sentence per status, except validation refusals,
    whose details are passed through :func:`public_details`. The raw details are
    for the logs only.
    """
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else "") or ""
    retry = {"Retry-After": str(retry_after)}
    if code == grpc.StatusCode.UNAVAILABLE:
        return ApiError(
            503, "inference_unavailable", "The inference server is unavailable; try again shortly.",
            headers=retry,
        )  # fmt: skip
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ApiError(504, "generation_timeout", "The generation did not finish in time.")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ApiError(503, "overloaded", "The server is busy; try again shortly.", headers=retry)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
        message = public_details(details) or "The request was refused."
        return ApiError(422, "validation_error", message)
    if code == grpc.StatusCode.CANCELLED:
        return ApiError(409, "generation_cancelled", "The generation was cancelled.")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return ApiError(
            503, "inference_unavailable", "The model is not available right now.", headers=retry
        )
    return ApiError(502, "inference_error", "The generation failed on the inference server.")


def _service_config(health_watch: bool = True) -> str:
    """``health_watch``: gRPC watches each address's health (needs the token where one is set)."""
    health = {"healthCheckConfig": {"serviceName": SERVICE}} if health_watch else {}
    return json.dumps(
        {
            # A target that resolves to several addresses (dns:///name:port) is balanced over them.
            "loadBalancingConfig": [{"round_robin": {}}],
            **health,
            "methodConfig": [
                {
                    "name": [{"service": SERVICE, "method": "ListModels"}],
                    "retryPolicy": {
                        "maxAttempts": 3,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


def parse_targets(targets: str) -> list[str]:
    """Comma-separated gRPC targets, each as gRPC reads it (``host:port``, ``dns:///...``)."""
    parts = [t.strip() for t in targets.split(",") if t.strip()]
    if not parts:
        raise ValueError("GENSERVE_INFERENCE_TARGETS names no inference server")
    return list(dict.fromkeys(parts))


@dataclass
class CollectedFile:
    """An output file put back together from its chunks."""

    index: int
    role: int
    content_type: str
    file_name: str
    width: int
    height: int
    duration_seconds: float
    frame_count: int
    frame_rate: float
    data: bytearray = field(default_factory=bytearray)


@dataclass
class StreamResult:
    files: list[CollectedFile]
    completion: pb.Completion


class TargetLink:
    """One inference server: its own channel, so the bridge knows who serves what."""

    def __init__(self, target: str, max_message_bytes: int, security: LinkSecurity) -> None:
        """``security``: TLS and the service token, from the bridge's settings."""
        self.target = target
        self.security = security
        self.channel = self.security.channel(
            target,
            options=[
                ("grpc.service_config", _service_config(security.health_watch(target))),
                ("grpc.enable_retries", 1),
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.keepalive_time_ms", 30000),
            ],
        )
        self.stub = pb_grpc.InferenceServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.serving = False

    async def check(self, deadline_s: float) -> bool:
        try:
            reply = await self.health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=deadline_s
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def list_models(self, deadline_s: float) -> list[ModelEntry]:
        reply: pb.ListModelsResponse = await self.stub.ListModels(
            pb.ListModelsRequest(), timeout=deadline_s
        )
        entries = (ModelEntry.from_pb(info) for info in reply.models)
        return [e for e in entries if e is not None]


class InferenceClient:
    """Long-lived: one channel per target, created in the app's lifespan.

    ``refresh`` (run at start-up and then periodically) checks each target's
    health and asks a target that has come (back) for its models, so the
    catalogue follows the servers as they come and go.
    """

    def __init__(
        self,
        targets: str,
        security: LinkSecurity | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        link_security = security or LinkSecurity()
        self.links = {
            t: TargetLink(t, max_message_bytes, link_security) for t in parse_targets(targets)
        }
        self.catalogue = Catalogue(targets=list(self.links))
        self._turn = itertools.count()
        self._outstanding: dict[str, int] = {}
        self._refreshing: asyncio.Lock | None = None

    async def close(self) -> None:
        for link in self.links.values():
            await link.channel.close(None)

    async def serving(self, deadline_s: float = 2.0) -> bool:
        """Whether any target is serving now."""
        answers = await asyncio.gather(*(link.check(deadline_s) for link in self.links.values()))
        return any(answers)

    async def refresh(self, deadline_s: float = 2.0) -> None:
        """Health of every target; the models of each one that is serving and was not."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            await asyncio.gather(
                *(self._refresh_one(link, deadline_s) for link in self.links.values())
            )

    async def _refresh_one(self, link: TargetLink, deadline_s: float) -> None:
        serving = await link.check(deadline_s)
        came = serving and (not link.serving or link.target not in self.catalogue.listed)
        if came:
            try:
                entries = await link.list_models(deadline_s)
            except grpc.RpcError as exc:
                log.warning("ListModels on %s failed: %s", link.target, exc.code())
                serving = False
            else:
                self.catalogue.update(link.target, entries)
                log.info("inference %s serves %s", link.target, ", ".join(e.name for e in entries))
        elif serving:
            # Which models are on which device changes as they take turns: routing prefers warm.
            try:
                self.catalogue.update(link.target, await link.list_models(deadline_s))
            except grpc.RpcError as exc:
                log.debug("ListModels on %s failed: %s", link.target, exc.code())
        elif link.serving:
            log.warning("inference %s stopped serving", link.target)
        link.serving = serving

    def route(self, model: ModelEntry, exclude: Sequence[str] = ()) -> TargetLink | None:
        """A target for this model: the serving one with the least outstanding work.

        Targets that listed the model come first; among them those serving now,
        then the least loaded; among those, the ones with the model on their device
        (no load or copy first); remaining ties taken in turn. None when every
        candidate is excluded.
        """
        targets = self.catalogue.targets_for(model.name, model.kind) or list(self.links)
        links = [self.links[t] for t in targets if t not in exclude]
        if not links:
            return None
        live = [link for link in links if link.serving] or links
        least = min(self._outstanding.get(link.target, 0) for link in live)
        lightest = [link for link in live if self._outstanding.get(link.target, 0) == least]
        warm = self.catalogue.warm_targets(model.name, model.kind)
        lightest = [link for link in lightest if link.target in warm] or lightest
        return lightest[next(self._turn) % len(lightest)]

    async def generate(
        self,
        model: ModelEntry,
        method: str,
        request: Any,
        deadline_s: float,
        on_progress: ProgressHook | None = None,
        caller: tuple[int, str] | None = None,
    ) -> StreamResult:
        """Runs one generation RPC to its end, on a target that serves the model.

        A target that is unreachable or refuses the work before the first byte
        of output arrives is marked down and the request goes, once, to another
        target serving the model, within the same deadline: the caller sees one
        answer (and pays once). Once output has started, a failure is final.

        ``caller``, the account id and plan, goes in the metadata: the server's
        queue orders work by plan, then lets accounts take turns.
        """
        deadline = time.monotonic() + deadline_s
        tried: list[str] = []
        metadata = request_metadata(request, caller)
        while True:
            link = self.route(model, exclude=tried)
            assert link is not None  # the first attempt has every target; a retry checked
            tried.append(link.target)
            call = getattr(link.stub, method)(
                request, timeout=max(0.001, deadline - time.monotonic()), metadata=metadata
            )
            self._outstanding[link.target] = self._outstanding.get(link.target, 0) + 1
            progress = StreamProgress()
            sent, outcome = time.perf_counter(), "error"
            try:
                result = await collect(call, on_progress, progress)
                outcome = "OK"
                return result
            except asyncio.CancelledError:
                outcome = "CANCELLED"
                raise
            except grpc.aio.AioRpcError as exc:
                outcome = exc.code().name
                again = (
                    len(tried) == 1
                    and not progress.output_started
                    and exc.code() in RETRYABLE
                    and self.route(model, exclude=tried) is not None
                )
                if not again:
                    raise
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    link.serving = False
                log.warning(
                    "inference %s failed before output (%s); retrying on another target",
                    link.target,
                    exc.code(),
                )
            finally:
                call.cancel()
                self._outstanding[link.target] -= 1
                METRICS.inference.labels(method, outcome).observe(time.perf_counter() - sent)


def request_metadata(
    request: Any, caller: tuple[int, str] | None = None
) -> tuple[tuple[str, str], ...] | None:
    """``x-request-id``: the bridge's request id, which the inference server logs under;
    with ``caller``, its account and plan, which the server's queue orders work by."""
    rid = getattr(request, "request_id", "") or request_id_var.get()
    pairs = [("x-request-id", rid)] if rid else []
    if caller is not None:
        pairs += [(vocab.ACCOUNT_METADATA, str(caller[0])), (vocab.PLAN_METADATA, caller[1])]
    return tuple(pairs) or None


class CatalogueWatch(Periodic):
    """Follows the targets: their health every few seconds, their models when they come."""

    name = "catalogue"

    def __init__(self, client: InferenceClient, interval_s: float) -> None:
        super().__init__(interval_s=interval_s)
        self.client = client

    async def run_once(self) -> None:
        await self.client.refresh()


@dataclass
class StreamProgress:
    """How far a stream got: whether any output byte has arrived."""

    output_started: bool = False


RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
"""Refusals another target may not give: gone or draining, or its queue is full."""


async def collect(
    call: AsyncIterator[Any],
    on_progress: ProgressHook | None = None,
    progress: StreamProgress | None = None,
) -> StreamResult:
    """Reads a generation stream to its end: progress to ``on_progress``, chunks into files."""
    files: dict[tuple[int, int], CollectedFile] = {}
    completion: pb.Completion | None = None
    async for message in call:
        kind = message.WhichOneof("event")
        if kind == "progress":
            if on_progress is not None:
                await on_progress(message.progress)
        elif kind == "chunk":
            if progress is not None:
                progress.output_started = True
            c = message.chunk
            key = (c.role, c.index)
            f = files.get(key)
            if f is None:
                f = files[key] = CollectedFile(
                    index=c.index, role=c.role, content_type=c.content_type,
                    file_name=c.file_name, width=c.width, height=c.height,
                    duration_seconds=c.duration_seconds, frame_count=c.frame_count,
                    frame_rate=c.frame_rate,
                )  # fmt: skip
            if c.offset != len(f.data):
                raise ApiError(502, "inference_error", "The inference server sent a broken file.")
            f.data.extend(c.data)
        elif kind == "completion":
            completion = message.completion
    if completion is None:
        raise ApiError(502, "inference_error", "The inference server ended without a result.")
    ordered = sorted(files.values(), key=lambda f: (f.role, f.index))
    return StreamResult(files=ordered, completion=completion)
