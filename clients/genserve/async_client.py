"""``genserve.AsyncClient``: the REST API from Python, over httpx.

    from genserve import AsyncClient

    async with AsyncClient() as client:  # GENSERVE_BASE_URL / GENSERVE_API_KEY, or `genserve login`
        result = await client.images.generate("a fox in the snow", aspect_ratio="16:9")
        await result.asave("out/")

Every generation sends one ``Idempotency-Key`` (made per call) with all its attempts,
so a retry after a 429, a 503 or a broken connection never debits twice.
"""

# codegen: async-only begin
# The SDK is written once, here: `python -m genserve.codegen` writes client.py (the
# synchronous genserve.Client) from this file, by the rewrite table of genserve/codegen.py
# (AsyncClient -> Client, `await x` -> `x`, aclose -> close, ...). Edit this file, then
# regenerate; `python -m genserve.codegen --check` (and tests/test_codegen.py) fails while
# client.py is stale. A section like this one is left out of client.py.
# codegen: async-only end

from __future__ import annotations

import asyncio  # codegen: async-only
import builtins
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast, overload
from urllib.parse import quote

import httpx

from genserve._core import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    EVENTS_ACCEPT,
    Call,
    RetryPolicy,
    as_timeout,
    completed_from_json,
    connection_error,
    envelope_data,
    generation_headers,
    is_event_stream,
    is_replayed,
    new_idempotency_key,
    project_params,
    request_headers,
    to_event,
    typed_result,
    wait_timeout_error,
)
from genserve._sse import SseDecoder
from genserve.config import resolve
from genserve.errors import APIConnectionError, APITimeoutError, error_from_response
from genserve.params import (
    KIND_SPECS,
    ImageInput,
    ImageParams,
    ThreeDParams,
    VideoParams,
    request_body,
)
from genserve.results import (
    Accepted,
    Account,
    CancelResult,
    Event,
    GenerationResult,
    GenerationStatus,
    ImageResult,
    ModelInfo,
    ModelResult,
    Project,
    ProjectPage,
    VideoResult,
)

if TYPE_CHECKING:
    from genserve.vocabulary import Kind

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # genserve-client depends on typing_extensions on Python 3.10
    from typing_extensions import Unpack

__all__ = ["AsyncClient", "AsyncGenerationStream", "AsyncJob"]

R = TypeVar("R", bound=GenerationResult)


class AsyncClient:
    """A genserve bridge's REST API; each resource is an attribute:

    - ``images``: ``POST /api/v1/images``, a prompt to images (``generate``, ``submit``)
    - ``videos``: ``POST /api/v1/videos``, a prompt to a video (``generate``, ``submit``)
    - ``three_d``: ``POST /api/v1/3d``, one image to a 3D model, GLB (``generate``, ``submit``)
    - ``projects``: your past generations, one page (``list``), every page (``iter``, ``pages``)
    - ``models``: the models the bridge serves (``list``)
    - ``account``: your plan, points and requests left this hour (``get``)
    - ``generations``: one generation by id (``get``, ``events``, ``wait``, ``cancel``)

    ``generate`` answers the result when done (``stream=True``: its progress events as they
    happen); ``submit`` answers at once with a job to ``wait`` for, follow or ``cancel``.

    ``api_key`` and ``base_url`` default to ``GENSERVE_API_KEY`` and ``GENSERVE_BASE_URL``,
    then to the file ``genserve login`` writes, then (the URL) to ``http://127.0.0.1:8000``.
    ``timeout`` is in seconds per request (a synchronous generation answers when done);
    ``max_retries`` how many times a 429, a 503 or a broken connection is retried.
    ``http_client`` (closed by you) or ``transport`` customise the httpx side.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_policy: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        settings = resolve(base_url, api_key)
        self.base_url = settings.base_url
        self.api_key = settings.api_key
        self.timeout = timeout
        self.retry = retry_policy or RetryPolicy(max_retries=max_retries)
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=as_timeout(timeout), transport=transport
        )
        self.images = Images(self)
        self.videos = Videos(self)
        self.three_d = ThreeD(self)
        self.projects = Projects(self)
        self.models = Models(self)
        self.account = AccountAPI(self)
        self.generations = Generations(self)

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.base_url!r})"

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------ plumbing

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def _bind(self, obj: Any) -> None:
        obj._bind(self._http, self.base_url)

    async def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        """Sends ``call``, retrying as the policy says; an error answer is raised."""
        url = self.base_url + call.path
        content = call.content()
        headers = request_headers(self.api_key, call)
        extra: dict[str, Any] = {}
        if call.timeout is not None:
            extra["timeout"] = as_timeout(call.timeout)
        attempt = 0
        while True:
            request = self._http.build_request(
                call.method, url, params=call.params, content=content, headers=headers, **extra
            )
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.delay_after_transport(exc, attempt)
                if delay is None:
                    raise connection_error(exc, url) from exc
                await self._sleep(delay)
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            try:
                await response.aread()
            except httpx.TransportError as exc:
                raise connection_error(exc, url) from exc
            finally:
                await response.aclose()
            err = error_from_response(response.status_code, response.headers, response.content)
            delay = self.retry.delay_after_error(err, attempt, call.idempotency_key is not None)
            if delay is None:
                raise err
            await self._sleep(delay)
            attempt += 1

    async def _request(self, call: Call) -> tuple[Any, httpx.Response]:
        response = await self._send(call)
        return envelope_data(response), response


class AsyncGenerationStream(Generic[R]):
    """The events of a generation as they happen (``Accept: text/event-stream``).

    Iterate it with ``async for``: ``queued`` and ``progress`` events and, last, the
    ``completed`` one (``event.result``; also ``stream.result``); a failed generation
    raises its error.
    Closing the stream early (or leaving its ``async with`` block) cancels the generation,
    and the server gives its points back.
    """

    def __init__(self, client: AsyncClient, response: httpx.Response, kind: str) -> None:
        self._client = client
        self._response = response
        self.kind = kind
        self.result: R | None = None
        self.last_event_id: str | None = None
        self._started = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        if self._started:
            raise RuntimeError("a generation stream can be iterated once")
        self._started = True
        response = self._response
        try:
            if not is_event_stream(response):
                await response.aread()
                event = completed_from_json(envelope_data(response), self.kind, self._client._bind)
                self.result = cast(R, event.result)
                yield event
                return
            decoder = SseDecoder()
            async for line in response.aiter_lines():
                raw = decoder.feed(line)
                if raw is None:
                    continue
                self.last_event_id = raw.id
                event = to_event(raw, self.kind, self._client._bind)
                if event.error is not None:
                    raise event.error
                if event.type == "completed":
                    self.result = cast(R, event.result)
                    yield event
                    return
                yield event
            raise APIConnectionError(
                "the event stream ended before the generation did", code="connection_error"
            )
        except httpx.TransportError as exc:
            raise connection_error(exc, str(response.url)) from exc
        finally:
            await response.aclose()

    async def until_done(self) -> R:
        """Reads the stream to its end; the result."""
        if not self._started:
            async for _ in self:
                pass
        if self.result is None:
            raise APIConnectionError("the stream ended without a result", code="connection_error")
        return self.result

    async def aclose(self) -> None:
        """Stops reading; a generation still running is cancelled and refunded."""
        await self._response.aclose()

    async def __aenter__(self) -> AsyncGenerationStream[R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncJob(Generic[R]):
    """A generation started with ``Prefer: respond-async`` (``submit``): it runs on its own,
    whatever happens to this process; ``wait``, ``events``, ``status`` and ``cancel`` follow it."""

    def __init__(
        self, client: AsyncClient, accepted: Accepted, kind: str, replayed: bool = False
    ) -> None:
        self._client = client
        self.accepted = accepted
        self.kind = kind
        self.replayed = replayed
        self.generation_id = accepted.generation_id
        self.request_id = accepted.request_id

    def __repr__(self) -> str:
        return f"AsyncJob(generation_id={self.generation_id!r}, kind={self.kind!r})"

    async def status(self) -> GenerationStatus:
        return await self._client.generations.get(self.generation_id)

    def events(self, last_event_id: str | None = None) -> AsyncIterator[Event]:
        """The job's events (resumed after ``last_event_id``); a failure raises its error."""
        return self._client.generations._follow(self.generation_id, last_event_id, self.kind)

    async def wait(self, timeout: float | None = None) -> R:
        """The result once done; ``GenerationTimeoutError`` (code ``wait_timeout``) after
        ``timeout`` seconds, the job going on; a failed or cancelled job raises its error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        follow = self._client.generations._follow(
            self.generation_id, None, self.kind, deadline=deadline, timeout=timeout
        )
        try:
            async for event in follow:
                if event.type == "completed" and event.result is not None:
                    return cast(R, event.result)
        finally:
            await follow.aclose()
        raise APIConnectionError("the event stream ended without a result", code="connection_error")

    async def cancel(self) -> CancelResult:
        return await self._client.generations.cancel(self.generation_id)


# ---------------------------------------------------------------- resources


class GenerationResource(Generic[R]):
    """One kind's ``POST``, driven by its ``genserve.params.KindSpec`` (route, parameters,
    body, result). A subclass per kind only names its kind and spells its signatures, so
    that type checkers and ``help()`` see each kind's own parameters."""

    kind: ClassVar[Kind]

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self.spec = KIND_SPECS[self.kind]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: POST {self.spec.path}>"

    async def _generate(
        self,
        first: Any,
        params: Mapping[str, Any],
        *,
        stream: bool,
        idempotency_key: str | None,
        timeout: float | None,
        extra_body: Mapping[str, Any] | None,
    ) -> R | AsyncGenerationStream[R]:
        call = self._call(first, params, extra_body, idempotency_key, "generate", stream=stream)
        call.timeout = timeout
        client = self._client
        if stream:
            return AsyncGenerationStream(client, await client._send(call, stream=True), self.kind)
        data, response = await client._request(call)
        return cast(R, typed_result(data, self.kind, response, client._bind))

    async def _submit(
        self,
        first: Any,
        params: Mapping[str, Any],
        *,
        idempotency_key: str | None,
        extra_body: Mapping[str, Any] | None,
    ) -> AsyncJob[R]:
        call = self._call(first, params, extra_body, idempotency_key, "submit", respond_async=True)
        data, response = await self._client._request(call)
        accepted = Accepted.from_dict(data if isinstance(data, dict) else {})
        return AsyncJob(self._client, accepted, self.kind, replayed=is_replayed(response))

    def _call(
        self,
        first: Any,
        params: Mapping[str, Any],
        extra_body: Mapping[str, Any] | None,
        idempotency_key: str | None,
        method: str,
        *,
        stream: bool = False,
        respond_async: bool = False,
    ) -> Call:
        return Call(
            "POST",
            self.spec.path,
            body=request_body(self.spec, first, params, extra_body, method=method),
            headers=generation_headers(stream=stream, respond_async=respond_async),
            idempotency_key=idempotency_key or new_idempotency_key(),
        )


class Images(GenerationResource[ImageResult]):
    """``client.images``: ``POST /api/v1/images``, a prompt to images."""

    kind = "image"

    @overload
    async def generate(
        self,
        prompt: str,
        *,
        stream: Literal[False] = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[ImageParams],
    ) -> ImageResult: ...

    @overload
    async def generate(
        self,
        prompt: str,
        *,
        stream: Literal[True],
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[ImageParams],
    ) -> AsyncGenerationStream[ImageResult]: ...

    async def generate(
        self,
        prompt: str,
        *,
        stream: bool = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[ImageParams],
    ) -> ImageResult | AsyncGenerationStream[ImageResult]:
        """Generates images; the keywords are ``genserve.ImageParams``. ``stream=True``
        answers its progress events instead (an ``AsyncGenerationStream``)."""
        return await self._generate(
            prompt,
            params,
            stream=stream,
            idempotency_key=idempotency_key,
            timeout=timeout,
            extra_body=extra_body,
        )

    async def submit(
        self,
        prompt: str,
        *,
        idempotency_key: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[ImageParams],
    ) -> AsyncJob[ImageResult]:
        """Starts the generation and returns at once (``Prefer: respond-async``)."""
        return await self._submit(
            prompt, params, idempotency_key=idempotency_key, extra_body=extra_body
        )


class Videos(GenerationResource[VideoResult]):
    """``client.videos``: ``POST /api/v1/videos``, a prompt to a video."""

    kind = "video"

    @overload
    async def generate(
        self,
        prompt: str,
        *,
        stream: Literal[False] = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[VideoParams],
    ) -> VideoResult: ...

    @overload
    async def generate(
        self,
        prompt: str,
        *,
        stream: Literal[True],
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[VideoParams],
    ) -> AsyncGenerationStream[VideoResult]: ...

    async def generate(
        self,
        prompt: str,
        *,
        stream: bool = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[VideoParams],
    ) -> VideoResult | AsyncGenerationStream[VideoResult]:
        """Generates a video; the keywords are ``genserve.VideoParams``. ``stream=True``
        answers its progress events instead (an ``AsyncGenerationStream``)."""
        return await self._generate(
            prompt,
            params,
            stream=stream,
            idempotency_key=idempotency_key,
            timeout=timeout,
            extra_body=extra_body,
        )

    async def submit(
        self,
        prompt: str,
        *,
        idempotency_key: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[VideoParams],
    ) -> AsyncJob[VideoResult]:
        """Starts the generation and returns at once (``Prefer: respond-async``)."""
        return await self._submit(
            prompt, params, idempotency_key=idempotency_key, extra_body=extra_body
        )


class ThreeD(GenerationResource[ModelResult]):
    """``client.three_d``: ``POST /api/v1/3d``, one image (a path, a URL or bytes) to a GLB
    and its preview."""

    kind = "3d"

    @overload
    async def generate(
        self,
        image: ImageInput | None = None,
        *,
        stream: Literal[False] = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[ThreeDParams],
    ) -> ModelResult: ...

    @overload
    async def generate(
        self,
        image: ImageInput | None = None,
        *,
        stream: Literal[True],
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[ThreeDParams],
    ) -> AsyncGenerationStream[ModelResult]: ...

    async def generate(
        self,
        image: ImageInput | None = None,
        *,
        stream: bool = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[ThreeDParams],
    ) -> ModelResult | AsyncGenerationStream[ModelResult]:
        """Turns one image into a 3D model. ``image`` may be a path, an ``http(s)`` URL
        or bytes (or a keyword names it); the keywords are ``genserve.ThreeDParams``.
        ``stream=True`` answers its progress events instead (an ``AsyncGenerationStream``)."""
        return await self._generate(
            image,
            params,
            stream=stream,
            idempotency_key=idempotency_key,
            timeout=timeout,
            extra_body=extra_body,
        )

    async def submit(
        self,
        image: ImageInput | None = None,
        *,
        idempotency_key: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[ThreeDParams],
    ) -> AsyncJob[ModelResult]:
        """Starts the generation and returns at once (``Prefer: respond-async``)."""
        return await self._submit(
            image, params, idempotency_key=idempotency_key, extra_body=extra_body
        )


class Projects:
    """``GET /api/v1/projects``: one page with ``list``, every page with ``iter``; ``q`` finds
    projects by prompt text. ``delete`` removes one and its files."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(
        self,
        *,
        type: str | None = None,
        page: int | None = None,
        limit: int | None = None,
        sort: str | None = None,
        order: str | None = None,
        q: str | None = None,
    ) -> ProjectPage:
        """One page: ``type`` all|images|videos|3d, ``page`` from 1, ``limit`` 1 to 100, ``q``
        text the prompt holds (any case)."""
        params = project_params(type=type, page=page, limit=limit, sort=sort, order=order, q=q)
        data, _ = await self._client._request(Call("GET", "/api/v1/projects", params=params))
        result = ProjectPage.from_dict(data if isinstance(data, dict) else {})
        for project in result.projects:
            self._client._bind(project)
        return result

    async def pages(
        self,
        *,
        type: str | None = None,
        limit: int | None = 100,
        sort: str | None = None,
        order: str | None = None,
        start: int = 1,
        q: str | None = None,
    ) -> AsyncIterator[ProjectPage]:
        """Every page from ``start``, fetched as the iteration reaches it."""
        page = start
        while True:
            result = await self.list(type=type, page=page, limit=limit, sort=sort, order=order, q=q)
            yield result
            if not result.pagination.has_more or not result.projects:
                return
            page += 1

    async def iter(
        self,
        *,
        type: str | None = None,
        limit: int | None = 100,
        sort: str | None = None,
        order: str | None = None,
        q: str | None = None,
    ) -> AsyncIterator[Project]:
        """Every project of every page (``limit`` per request)."""
        async for result in self.pages(type=type, limit=limit, sort=sort, order=order, q=q):
            for project in result.projects:
                yield project

    async def delete(self, project_id: str) -> None:
        """``DELETE /api/v1/projects/{id}``: the project and its files; another account's, or
        one already deleted, raises ``NotFoundError``."""
        await self._client._request(
            Call("DELETE", f"/api/v1/projects/{quote(project_id, safe='')}")
        )


class Models:
    """``GET /api/v1/models``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> builtins.list[ModelInfo]:
        data, _ = await self._client._request(Call("GET", "/api/v1/models"))
        models = data.get("models") if isinstance(data, dict) else None
        return [ModelInfo.from_dict(m) for m in models or [] if isinstance(m, dict)]


class AccountAPI:
    """``GET /api/v1/account``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get(self) -> Account:
        data, _ = await self._client._request(Call("GET", "/api/v1/account"))
        return Account.from_dict(data if isinstance(data, dict) else {})


class Generations:
    """One generation by id: status, events (resumable), cancel."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @staticmethod
    def _path(generation_id: str, tail: str = "") -> str:
        return f"/api/v1/generations/{quote(generation_id, safe='')}{tail}"

    async def get(self, generation_id: str) -> GenerationStatus:
        data, _ = await self._client._request(Call("GET", self._path(generation_id)))
        status = GenerationStatus.from_dict(data if isinstance(data, dict) else {})
        if status.result is not None:
            self._client._bind(status.result)
        return status

    async def cancel(self, generation_id: str) -> CancelResult:
        data, _ = await self._client._request(Call("POST", self._path(generation_id, "/cancel")))
        return CancelResult.from_dict(data if isinstance(data, dict) else {})

    def events(
        self, generation_id: str, *, last_event_id: str | None = None
    ) -> AsyncIterator[Event]:
        """The generation's events, from the first (or after ``last_event_id``) to the final
        one; a dropped connection is resumed with ``Last-Event-ID``. A failure raises."""
        return self._follow(generation_id, last_event_id, None)

    async def wait(self, generation_id: str, timeout: float | None = None) -> GenerationResult:
        """The result once done (see ``Job.wait``)."""
        kind = None
        deadline = None if timeout is None else time.monotonic() + timeout
        follow = self._follow(generation_id, None, kind, deadline=deadline, timeout=timeout)
        try:
            async for event in follow:
                if event.type == "completed" and event.result is not None:
                    return event.result
        finally:
            await follow.aclose()
        raise APIConnectionError("the event stream ended without a result", code="connection_error")

    async def _follow(
        self,
        generation_id: str,
        last_event_id: str | None,
        kind: str | None,
        *,
        deadline: float | None = None,
        timeout: float | None = None,
    ) -> AsyncGenerator[Event, None]:
        client = self._client
        path = self._path(generation_id, "/events")
        last = last_event_id
        failures = 0
        while True:
            headers = {"Accept": EVENTS_ACCEPT}
            if last:
                headers["Last-Event-ID"] = last
            read_timeout = client.timeout
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise wait_timeout_error(generation_id, timeout or 0)
                read_timeout = min(read_timeout, remaining)
            call = Call("GET", path, headers=headers, timeout=read_timeout)
            try:
                response = await client._send(call, stream=True)
            except APITimeoutError as exc:
                if deadline is not None and time.monotonic() >= deadline - 0.05:
                    raise wait_timeout_error(generation_id, timeout or 0) from exc
                raise
            cause: Exception | None = None
            try:
                try:
                    decoder = SseDecoder()
                    async for line in response.aiter_lines():
                        if deadline is not None and time.monotonic() >= deadline:
                            raise wait_timeout_error(generation_id, timeout or 0)
                        raw = decoder.feed(line)
                        if raw is None:
                            continue
                        failures = 0
                        if raw.id:
                            last = raw.id
                        event = to_event(raw, kind, client._bind)
                        if event.error is not None:
                            raise event.error
                        yield event
                        if event.type == "completed":
                            return
                finally:
                    await response.aclose()
            except httpx.TimeoutException as exc:
                if deadline is not None and time.monotonic() >= deadline - 0.05:
                    raise wait_timeout_error(generation_id, timeout or 0) from exc
                cause = exc
            except httpx.TransportError as exc:
                cause = exc
            failures += 1
            if failures > client.retry.max_retries:
                if cause is not None:
                    raise connection_error(cause, client.base_url + path) from cause
                raise APIConnectionError(
                    "the event stream keeps ending before the generation does",
                    code="connection_error",
                )
            await client._sleep(client.retry.backoff(failures - 1))
