"""``genserve.Client``: the REST API from Python, synchronously (httpx).

    from genserve import Client

    with Client() as client:  # GENSERVE_BASE_URL / GENSERVE_API_KEY, or `genserve login`
        result = client.images.generate("a fox in the snow", aspect_ratio="16:9")
        result.save("out/")

Every generation sends one ``Idempotency-Key`` (made per call) with all its attempts,
so a retry after a 429, a 503 or a broken connection never debits twice.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Generator, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, cast, overload
from urllib.parse import quote

import httpx

from genserve._core import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    EVENTS_ACCEPT,
    Call,
    ImageInput,
    RetryPolicy,
    as_timeout,
    completed_from_json,
    connection_error,
    envelope_data,
    generation_headers,
    image_body,
    is_event_stream,
    is_replayed,
    new_idempotency_key,
    project_params,
    request_headers,
    three_d_body,
    to_event,
    typed_result,
    video_body,
    wait_timeout_error,
)
from genserve._sse import SseDecoder
from genserve.config import resolve
from genserve.errors import APIConnectionError, APITimeoutError, error_from_response
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

__all__ = ["Client", "GenerationStream", "Job"]

R = TypeVar("R", bound=GenerationResult)


class Client:
    """A genserve bridge's REST API.

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
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = resolve(base_url, api_key)
        self.base_url = settings.base_url
        self.api_key = settings.api_key
        self.timeout = timeout
        self.retry = retry_policy or RetryPolicy(max_retries=max_retries)
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(timeout=as_timeout(timeout), transport=transport)
        self.images = Images(self)
        self.videos = Videos(self)
        self.three_d = ThreeD(self)
        self.projects = Projects(self)
        self.models = Models(self)
        self.account = AccountAPI(self)
        self.generations = Generations(self)

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _bind(self, obj: Any) -> None:
        obj._bind(self._http, self.base_url)

    def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
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
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.delay_after_transport(exc, attempt)
                if delay is None:
                    raise connection_error(exc, url) from exc
                self._sleep(delay)
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            try:
                response.read()
            except httpx.TransportError as exc:
                raise connection_error(exc, url) from exc
            finally:
                response.close()
            err = error_from_response(response.status_code, response.headers, response.content)
            delay = self.retry.delay_after_error(err, attempt, call.idempotency_key is not None)
            if delay is None:
                raise err
            self._sleep(delay)
            attempt += 1

    def _request(self, call: Call) -> tuple[Any, httpx.Response]:
        response = self._send(call)
        return envelope_data(response), response

    def _generate(
        self,
        path: str,
        cls: type[R],
        body: dict[str, Any],
        *,
        stream: bool = False,
        respond_async: bool = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> R | GenerationStream[R] | Job[R]:
        call = Call(
            "POST",
            path,
            body=body,
            headers=generation_headers(stream=stream, respond_async=respond_async),
            idempotency_key=idempotency_key or new_idempotency_key(),
            timeout=timeout,
        )
        if stream:
            return GenerationStream(self, self._send(call, stream=True), cls.kind)
        data, response = self._request(call)
        if respond_async:
            accepted = Accepted.from_dict(data if isinstance(data, dict) else {})
            return Job(self, accepted, cls.kind, replayed=is_replayed(response))
        return cast(R, typed_result(data, cls.kind, response, self._bind))


class GenerationStream(Generic[R]):
    """The events of a generation as they happen (``Accept: text/event-stream``).

    Iterate it for ``queued`` and ``progress`` events and, last, the ``completed`` one
    (``event.result``; also ``stream.result``); a failed generation raises its error.
    Closing the stream early (or leaving its ``with`` block) cancels the generation,
    and the server gives its points back.
    """

    def __init__(self, client: Client, response: httpx.Response, kind: str) -> None:
        self._client = client
        self._response = response
        self.kind = kind
        self.result: R | None = None
        self.last_event_id: str | None = None
        self._started = False

    def __iter__(self) -> Iterator[Event]:
        if self._started:
            raise RuntimeError("a generation stream can be iterated once")
        self._started = True
        response = self._response
        try:
            if not is_event_stream(response):
                response.read()
                event = completed_from_json(envelope_data(response), self.kind, self._client._bind)
                self.result = cast(R, event.result)
                yield event
                return
            decoder = SseDecoder()
            for line in response.iter_lines():
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
            response.close()

    def until_done(self) -> R:
        """Reads the stream to its end; the result."""
        if not self._started:
            for _ in self:
                pass
        if self.result is None:
            raise APIConnectionError("the stream ended without a result", code="connection_error")
        return self.result

    def close(self) -> None:
        """Stops reading; a generation still running is cancelled and refunded."""
        self._response.close()

    def __enter__(self) -> GenerationStream[R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Job(Generic[R]):
    """A generation started with ``Prefer: respond-async`` (``submit``): it runs on its own,
    whatever happens to this process; ``wait``, ``events``, ``status`` and ``cancel`` follow it."""

    def __init__(
        self, client: Client, accepted: Accepted, kind: str, replayed: bool = False
    ) -> None:
        self._client = client
        self.accepted = accepted
        self.kind = kind
        self.replayed = replayed
        self.generation_id = accepted.generation_id
        self.request_id = accepted.request_id

    def __repr__(self) -> str:
        return f"Job(generation_id={self.generation_id!r}, kind={self.kind!r})"

    def status(self) -> GenerationStatus:
        return self._client.generations.get(self.generation_id)

    def events(self, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events (resumed after ``last_event_id``); a failure raises its error."""
        return self._client.generations._follow(self.generation_id, last_event_id, self.kind)

    def wait(self, timeout: float | None = None) -> R:
        """The result once done; ``GenerationTimeoutError`` (code ``wait_timeout``) after
        ``timeout`` seconds, the job going on; a failed or cancelled job raises its error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        follow = self._client.generations._follow(
            self.generation_id, None, self.kind, deadline=deadline, timeout=timeout
        )
        try:
            for event in follow:
                if event.type == "completed" and event.result is not None:
                    return cast(R, event.result)
        finally:
            follow.close()
        raise APIConnectionError("the event stream ended without a result", code="connection_error")

    def cancel(self) -> CancelResult:
        return self._client.generations.cancel(self.generation_id)


# ---------------------------------------------------------------- resources


class Images:
    """``POST /api/v1/images``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @overload
    def generate(
        self,
        prompt: str,
        *,
        aspect_ratio: str | None = None,
        output_format: str | None = None,
        num_images: int | None = None,
        model: str | None = None,
        webhook_url: str | None = None,
        stream: Literal[False] = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> ImageResult: ...

    @overload
    def generate(
        self,
        prompt: str,
        *,
        aspect_ratio: str | None = None,
        output_format: str | None = None,
        num_images: int | None = None,
        model: str | None = None,
        webhook_url: str | None = None,
        stream: Literal[True],
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> GenerationStream[ImageResult]: ...

    def generate(
        self,
        prompt: str,
        *,
        aspect_ratio: str | None = None,
        output_format: str | None = None,
        num_images: int | None = None,
        model: str | None = None,
        webhook_url: str | None = None,
        stream: bool = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> ImageResult | GenerationStream[ImageResult]:
        """Generates images; unset fields take the server's defaults (1:1, png, 1, nano-banana).

        ``stream=True`` answers a ``GenerationStream`` of progress events instead."""
        body = image_body(
            prompt,
            aspect_ratio=aspect_ratio,
            output_format=output_format,
            num_images=num_images,
            model=model,
            webhook_url=webhook_url,
            extra=extra_body,
        )
        answer = self._client._generate(
            "/api/v1/images",
            ImageResult,
            body,
            stream=stream,
            idempotency_key=idempotency_key,
            timeout=timeout,
        )
        return cast("ImageResult | GenerationStream[ImageResult]", answer)

    def submit(
        self,
        prompt: str,
        *,
        aspect_ratio: str | None = None,
        output_format: str | None = None,
        num_images: int | None = None,
        model: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> Job[ImageResult]:
        """Starts the generation and returns at once (``Prefer: respond-async``)."""
        body = image_body(
            prompt,
            aspect_ratio=aspect_ratio,
            output_format=output_format,
            num_images=num_images,
            model=model,
            webhook_url=webhook_url,
            extra=extra_body,
        )
        answer = self._client._generate(
            "/api/v1/images", ImageResult, body, respond_async=True, idempotency_key=idempotency_key
        )
        return cast("Job[ImageResult]", answer)


class Videos:
    """``POST /api/v1/videos``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @overload
    def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        duration: int | None = None,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        webhook_url: str | None = None,
        stream: Literal[False] = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> VideoResult: ...

    @overload
    def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        duration: int | None = None,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        webhook_url: str | None = None,
        stream: Literal[True],
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> GenerationStream[VideoResult]: ...

    def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        duration: int | None = None,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        webhook_url: str | None = None,
        stream: bool = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> VideoResult | GenerationStream[VideoResult]:
        """Generates a video; unset fields take the server's defaults (vidu-q2, 4 s, 720p, 16:9)."""
        body = video_body(
            prompt,
            model=model,
            duration=duration,
            resolution=resolution,
            aspect_ratio=aspect_ratio,
            webhook_url=webhook_url,
            extra=extra_body,
        )
        answer = self._client._generate(
            "/api/v1/videos",
            VideoResult,
            body,
            stream=stream,
            idempotency_key=idempotency_key,
            timeout=timeout,
        )
        return cast("VideoResult | GenerationStream[VideoResult]", answer)

    def submit(
        self,
        prompt: str,
        *,
        model: str | None = None,
        duration: int | None = None,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> Job[VideoResult]:
        body = video_body(
            prompt,
            model=model,
            duration=duration,
            resolution=resolution,
            aspect_ratio=aspect_ratio,
            webhook_url=webhook_url,
            extra=extra_body,
        )
        answer = self._client._generate(
            "/api/v1/videos", VideoResult, body, respond_async=True, idempotency_key=idempotency_key
        )
        return cast("Job[VideoResult]", answer)


class ThreeD:
    """``POST /api/v1/3d``: one image (a path, a URL or bytes) to a GLB and its preview."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @overload
    def generate(
        self,
        image: ImageInput | None = None,
        *,
        image_path: str | os.PathLike[str] | None = None,
        image_url: str | None = None,
        image_bytes: bytes | None = None,
        texture_quality: str | None = None,
        texture_alignment: str | None = None,
        orientation: str | None = None,
        model: str | None = None,
        webhook_url: str | None = None,
        stream: Literal[False] = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> ModelResult: ...

    @overload
    def generate(
        self,
        image: ImageInput | None = None,
        *,
        image_path: str | os.PathLike[str] | None = None,
        image_url: str | None = None,
        image_bytes: bytes | None = None,
        texture_quality: str | None = None,
        texture_alignment: str | None = None,
        orientation: str | None = None,
        model: str | None = None,
        webhook_url: str | None = None,
        stream: Literal[True],
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> GenerationStream[ModelResult]: ...

    def generate(
        self,
        image: ImageInput | None = None,
        *,
        image_path: str | os.PathLike[str] | None = None,
        image_url: str | None = None,
        image_bytes: bytes | None = None,
        texture_quality: str | None = None,
        texture_alignment: str | None = None,
        orientation: str | None = None,
        model: str | None = None,
        webhook_url: str | None = None,
        stream: bool = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> ModelResult | GenerationStream[ModelResult]:
        """Turns one image into a 3D model. ``image`` may be a path, an ``http(s)`` URL
        or bytes; or name it with ``image_path``, ``image_url`` or ``image_bytes``."""
        body = three_d_body(
            image,
            image_path=image_path,
            image_url=image_url,
            image_bytes=image_bytes,
            texture_quality=texture_quality,
            texture_alignment=texture_alignment,
            orientation=orientation,
            model=model,
            webhook_url=webhook_url,
            extra=extra_body,
        )
        answer = self._client._generate(
            "/api/v1/3d",
            ModelResult,
            body,
            stream=stream,
            idempotency_key=idempotency_key,
            timeout=timeout,
        )
        return cast("ModelResult | GenerationStream[ModelResult]", answer)

    def submit(
        self,
        image: ImageInput | None = None,
        *,
        image_path: str | os.PathLike[str] | None = None,
        image_url: str | None = None,
        image_bytes: bytes | None = None,
        texture_quality: str | None = None,
        texture_alignment: str | None = None,
        orientation: str | None = None,
        model: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> Job[ModelResult]:
        body = three_d_body(
            image,
            image_path=image_path,
            image_url=image_url,
            image_bytes=image_bytes,
            texture_quality=texture_quality,
            texture_alignment=texture_alignment,
            orientation=orientation,
            model=model,
            webhook_url=webhook_url,
            extra=extra_body,
        )
        answer = self._client._generate(
            "/api/v1/3d", ModelResult, body, respond_async=True, idempotency_key=idempotency_key
        )
        return cast("Job[ModelResult]", answer)


class Projects:
    """``GET /api/v1/projects``: one page with ``list``, every page with ``iter``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(
        self,
        *,
        type: str | None = None,
        page: int | None = None,
        limit: int | None = None,
        sort: str | None = None,
        order: str | None = None,
    ) -> ProjectPage:
        """One page: ``type`` all|images|videos|3d, ``page`` from 1, ``limit`` 1 to 100."""
        params = project_params(type=type, page=page, limit=limit, sort=sort, order=order)
        data, _ = self._client._request(Call("GET", "/api/v1/projects", params=params))
        result = ProjectPage.from_dict(data if isinstance(data, dict) else {})
        for project in result.projects:
            self._client._bind(project)
        return result

    def pages(
        self,
        *,
        type: str | None = None,
        limit: int | None = 100,
        sort: str | None = None,
        order: str | None = None,
        start: int = 1,
    ) -> Iterator[ProjectPage]:
        """Every page from ``start``, fetched as the iteration reaches it."""
        page = start
        while True:
            result = self.list(type=type, page=page, limit=limit, sort=sort, order=order)
            yield result
            if not result.pagination.has_more or not result.projects:
                return
            page += 1

    def iter(
        self,
        *,
        type: str | None = None,
        limit: int | None = 100,
        sort: str | None = None,
        order: str | None = None,
    ) -> Iterator[Project]:
        """Every project of every page (``limit`` per request)."""
        for result in self.pages(type=type, limit=limit, sort=sort, order=order):
            yield from result.projects


class Models:
    """``GET /api/v1/models``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> builtins.list[ModelInfo]:
        data, _ = self._client._request(Call("GET", "/api/v1/models"))
        models = data.get("models") if isinstance(data, dict) else None
        return [ModelInfo.from_dict(m) for m in models or [] if isinstance(m, dict)]


class AccountAPI:
    """``GET /api/v1/account``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self) -> Account:
        data, _ = self._client._request(Call("GET", "/api/v1/account"))
        return Account.from_dict(data if isinstance(data, dict) else {})


class Generations:
    """One generation by id: status, events (resumable), cancel."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @staticmethod
    def _path(generation_id: str, tail: str = "") -> str:
        return f"/api/v1/generations/{quote(generation_id, safe='')}{tail}"

    def get(self, generation_id: str) -> GenerationStatus:
        data, _ = self._client._request(Call("GET", self._path(generation_id)))
        status = GenerationStatus.from_dict(data if isinstance(data, dict) else {})
        if status.result is not None:
            self._client._bind(status.result)
        return status

    def cancel(self, generation_id: str) -> CancelResult:
        data, _ = self._client._request(Call("POST", self._path(generation_id, "/cancel")))
        return CancelResult.from_dict(data if isinstance(data, dict) else {})

    def events(self, generation_id: str, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The generation's events, from the first (or after ``last_event_id``) to the final
        one; a dropped connection is resumed with ``Last-Event-ID``. A failure raises."""
        return self._follow(generation_id, last_event_id, None)

    def wait(self, generation_id: str, timeout: float | None = None) -> GenerationResult:
        """The result once done (see ``Job.wait``)."""
        kind = None
        deadline = None if timeout is None else time.monotonic() + timeout
        follow = self._follow(generation_id, None, kind, deadline=deadline, timeout=timeout)
        try:
            for event in follow:
                if event.type == "completed" and event.result is not None:
                    return event.result
        finally:
            follow.close()
        raise APIConnectionError("the event stream ended without a result", code="connection_error")

    def _follow(
        self,
        generation_id: str,
        last_event_id: str | None,
        kind: str | None,
        *,
        deadline: float | None = None,
        timeout: float | None = None,
    ) -> Generator[Event, None, None]:
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
                response = client._send(call, stream=True)
            except APITimeoutError as exc:
                if deadline is not None and time.monotonic() >= deadline - 0.05:
                    raise wait_timeout_error(generation_id, timeout or 0) from exc
                raise
            cause: Exception | None = None
            try:
                try:
                    decoder = SseDecoder()
                    for line in response.iter_lines():
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
                    response.close()
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
            client._sleep(client.retry.backoff(failures - 1))
