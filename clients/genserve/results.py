"""Typed answers: the document's JSON shapes as dataclasses.

Every class is built with ``from_dict`` from the ``data`` of a success envelope.
The document's fields are attributes; any other field a newer server adds is kept
in ``extra`` (never an error), so an older SDK keeps working against a newer bridge.
Output files (``ImageFile``, ``VideoFile``, ``ModelFile``, a project's ``outputs``)
download themselves with ``save()`` (or ``await asave()``), streaming to disk.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeAlias
from urllib.parse import unquote, urljoin, urlsplit

from genserve.errors import GenserveError, error_from_response

__all__ = [
    "Accepted",
    "Account",
    "CancelResult",
    "Event",
    "GenerationResult",
    "GenerationStatus",
    "ImageFile",
    "ImageResult",
    "ModelFile",
    "ModelInfo",
    "ModelResult",
    "OutputFile",
    "Pagination",
    "Project",
    "ProjectPage",
    "ThreeDResult",
    "VideoFile",
    "VideoResult",
    "result_from_data",
]

PathLike: TypeAlias = "str | os.PathLike[str]"


def _extra(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k not in known}


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _safe_name(name: str, url: str) -> str:
    """A file name to write: the answer's, else the URL's last segment; never a path."""
    candidate = Path(name).name if name else ""
    if not candidate:
        candidate = Path(unquote(urlsplit(url).path)).name
    return candidate if candidate not in ("", ".", "..") else "download"


def _destination(path: PathLike | None, name: str) -> Path:
    """``path`` as a file, or as a folder (existing, or spelled with a trailing slash)."""
    if path is None:
        return Path.cwd() / name
    text = os.fspath(path)
    target = Path(text).expanduser()
    if target.is_dir() or text.endswith(("/", os.sep)):
        target.mkdir(parents=True, exist_ok=True)
        return target / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


# ---------------------------------------------------------------- output files


@dataclass(kw_only=True)
class OutputFile:
    """One output file at its capability URL (no key needed to fetch it)."""

    url: str
    content_type: str = ""
    file_name: str = ""
    file_size: int = 0
    width: int | None = None
    height: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _http: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def _common(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "url": _str(data.get("url")),
            "content_type": _str(data.get("content_type")),
            "file_name": _str(data.get("file_name")),
            "file_size": _int(data.get("file_size")),
            "width": _opt_int(data.get("width")),
            "height": _opt_int(data.get("height")),
            "extra": _extra(cls, data),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputFile:
        return cls(**cls._common(data))

    def _bind(self, http: Any, base_url: str | None) -> None:
        self._http = http
        if base_url and self.url:
            self.url = urljoin(base_url + "/", self.url)

    @property
    def name(self) -> str:
        """The name ``save`` gives the file in a folder."""
        return _safe_name(self.file_name, self.url)

    def save(self, path: PathLike | None = None) -> Path:
        """Downloads the file (streaming) to ``path``: a file, or a folder to put it in
        under its ``file_name`` (default: the current folder). Returns where it went."""
        import httpx

        dest = _destination(path, self.name)
        http = self._http if isinstance(self._http, httpx.Client) else None
        own = http is None or http.is_closed
        client: httpx.Client = httpx.Client(timeout=600.0) if own else http  # type: ignore[assignment]
        try:
            with client.stream("GET", self.url) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(
                        response.status_code, response.headers, response.content
                    )
                with _Partial(dest) as out:
                    for chunk in response.iter_bytes(1 << 16):
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise _download_error(exc, self.url) from exc
        finally:
            if own:
                client.close()
        return dest

    async def asave(self, path: PathLike | None = None) -> Path:
        """``save`` for asyncio: the same download, without blocking the event loop on I/O."""
        import httpx

        dest = _destination(path, self.name)
        http = self._http if isinstance(self._http, httpx.AsyncClient) else None
        own = http is None or http.is_closed
        client: httpx.AsyncClient = httpx.AsyncClient(timeout=600.0) if own else http  # type: ignore[assignment]
        try:
            async with client.stream("GET", self.url) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from_response(
                        response.status_code, response.headers, response.content
                    )
                with _Partial(dest) as out:
                    async for chunk in response.aiter_bytes(1 << 16):
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise _download_error(exc, self.url) from exc
        finally:
            if own:
                await client.aclose()
        return dest


def _download_error(exc: Exception, url: str) -> GenserveError:
    from genserve.errors import APIConnectionError

    return APIConnectionError(
        f"downloading {url} failed: {type(exc).__name__}: {exc}", code="connection_error"
    )


class _Partial:
    """Writes beside the destination and moves into place only when complete."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        self.tmp = Path(name)
        self.file = os.fdopen(fd, "wb")

    def __enter__(self) -> _Partial:
        return self

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.file.close()
        if exc_type is None:
            os.replace(self.tmp, self.dest)
        else:
            self.tmp.unlink(missing_ok=True)


@dataclass(kw_only=True)
class ImageFile(OutputFile):
    """One image: the document's ``images[]`` item."""

    aspect_ratio: str | None = None
    seed: int | None = None
    """The seed this image was made with: ask again with it for the same image."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageFile:
        seed = data.get("seed")
        return cls(
            **cls._common(data),
            aspect_ratio=_opt_str(data.get("aspect_ratio")),
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        )


@dataclass(kw_only=True)
class VideoFile(OutputFile):
    """The document's ``video`` object, with the bridge's additions (poster, frame rate)."""

    duration: float | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    model: str | None = None
    generation_id: str | None = None
    thumbnail: str | None = None
    frame_rate: float | None = None
    frame_count: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VideoFile:
        return cls(
            **cls._common(data),
            duration=_opt_float(data.get("duration")),
            resolution=_opt_str(data.get("resolution")),
            aspect_ratio=_opt_str(data.get("aspect_ratio")),
            model=_opt_str(data.get("model")),
            generation_id=_opt_str(data.get("generation_id")),
            thumbnail=_opt_str(data.get("thumbnail")),
            frame_rate=_opt_float(data.get("frame_rate")),
            frame_count=_opt_int(data.get("frame_count")),
        )

    def _bind(self, http: Any, base_url: str | None) -> None:
        super()._bind(http, base_url)
        if base_url and self.thumbnail:
            self.thumbnail = urljoin(base_url + "/", self.thumbnail)


@dataclass(kw_only=True)
class ModelFile(OutputFile):
    """The document's 3D ``model`` object: a GLB and its rendered preview."""

    preview_image: str | None = None
    texture_quality: str | None = None
    generation_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelFile:
        return cls(
            **cls._common(data),
            preview_image=_opt_str(data.get("preview_image")),
            texture_quality=_opt_str(data.get("texture_quality")),
            generation_id=_opt_str(data.get("generation_id")),
        )

    def _bind(self, http: Any, base_url: str | None) -> None:
        super()._bind(http, base_url)
        if base_url and self.preview_image:
            self.preview_image = urljoin(base_url + "/", self.preview_image)

    def preview(self) -> OutputFile | None:
        """The preview JPEG as a file to ``save``, when there is one."""
        if not self.preview_image:
            return None
        preview = OutputFile(url=self.preview_image, content_type="image/jpeg")
        preview._http = self._http
        return preview


# ---------------------------------------------------------------- generation answers


@dataclass(kw_only=True)
class GenerationResult:
    """What every generation answers: its id, time, the balance left and the request id."""

    kind: ClassVar[str] = ""

    generation_id: str = ""
    generation_time: int = 0
    """Milliseconds the generation took."""
    remaining_points: int = 0
    request_id: str = ""
    replayed: bool = False
    """True when the answer is the stored one of an earlier call with the same
    ``Idempotency-Key`` (``Idempotent-Replayed: true``): nothing was debited again."""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationResult:
        """Each kind's result (images, video, 3D model) reads its own ``data``."""
        raise NotImplementedError(f"{cls.__name__} is read by its kind's result class")

    @classmethod
    def _common(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "generation_id": _str(data.get("generation_id")),
            "generation_time": _int(data.get("generation_time")),
            "remaining_points": _int(data.get("remaining_points")),
            "request_id": _str(data.get("request_id")),
            "extra": _extra(cls, data),
        }

    @property
    def files(self) -> list[OutputFile]:
        """The output files, in order."""
        return []

    def _bind(self, http: Any, base_url: str | None) -> None:
        for f in self.files:
            f._bind(http, base_url)

    def save(self, folder: PathLike | None = None) -> list[Path]:
        """Downloads every output file into ``folder`` (default: the current folder)."""
        target = Path(folder) if folder is not None else Path.cwd()
        target.mkdir(parents=True, exist_ok=True)
        return [f.save(target) for f in self.files]

    async def asave(self, folder: PathLike | None = None) -> list[Path]:
        target = Path(folder) if folder is not None else Path.cwd()
        target.mkdir(parents=True, exist_ok=True)
        return [await f.asave(target) for f in self.files]


@dataclass(kw_only=True)
class ImageResult(GenerationResult):
    """``POST /api/v1/images``: the images, the generation's id, time and the balance left."""

    kind: ClassVar[str] = "image"
    images: list[ImageFile] = field(default_factory=list)
    seed: int | None = None
    """The request's seed (its first image's); image ``i`` used ``seed + i``."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageResult:
        images = [ImageFile.from_dict(i) for i in data.get("images") or [] if isinstance(i, dict)]
        seed = data.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool):
            seed = images[0].seed if images else None
        return cls(**cls._common(data), images=images, seed=seed)

    @property
    def files(self) -> list[OutputFile]:
        return list(self.images)


@dataclass(kw_only=True)
class VideoResult(GenerationResult):
    """``POST /api/v1/videos``: the ``video`` object (its ``generation_id`` is the result's)."""

    kind: ClassVar[str] = "video"
    video: VideoFile = field(default_factory=lambda: VideoFile(url=""))
    seed: int | None = None
    """The seed the video was made with: ask again with it for the same video."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VideoResult:
        video = VideoFile.from_dict(_dict(data.get("video")))
        common = cls._common(data)
        common["generation_id"] = common["generation_id"] or (video.generation_id or "")
        seed = data.get("seed")
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
        return cls(**common, video=video, seed=seed)

    @property
    def files(self) -> list[OutputFile]:
        return [self.video] if self.video.url else []


@dataclass(kw_only=True)
class ModelResult(GenerationResult):
    """``POST /api/v1/3d``: the ``model`` object, a GLB with its preview image."""

    kind: ClassVar[str] = "3d"
    model: ModelFile = field(default_factory=lambda: ModelFile(url=""))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelResult:
        model = ModelFile.from_dict(_dict(data.get("model")))
        common = cls._common(data)
        common["generation_id"] = common["generation_id"] or (model.generation_id or "")
        return cls(**common, model=model)

    @property
    def files(self) -> list[OutputFile]:
        return [self.model] if self.model.url else []


ThreeDResult = ModelResult
"""The 3D answer under the endpoint's name."""

RESULT_CLASSES: dict[str, type[GenerationResult]] = {
    "image": ImageResult,
    "video": VideoResult,
    "3d": ModelResult,
}


def result_from_data(data: Mapping[str, Any], kind: str | None = None) -> GenerationResult:
    """The typed answer of a generation; the kind is read from the shape when not given."""
    if kind is None or kind not in RESULT_CLASSES:
        if "images" in data:
            kind = "image"
        elif isinstance(data.get("video"), Mapping):
            kind = "video"
        else:
            kind = "3d"
    return RESULT_CLASSES[kind].from_dict(data)


# ---------------------------------------------------------------- jobs and events


@dataclass(kw_only=True)
class Accepted:
    """``202`` to ``Prefer: respond-async``: where to follow the job."""

    generation_id: str
    status: str = "pending"
    status_url: str = ""
    events_url: str = ""
    cancel_url: str = ""
    request_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Accepted:
        return cls(
            generation_id=_str(data.get("generation_id")),
            status=_str(data.get("status") or "pending"),
            status_url=_str(data.get("status_url")),
            events_url=_str(data.get("events_url")),
            cancel_url=_str(data.get("cancel_url")),
            request_id=_str(data.get("request_id")),
            extra=_extra(cls, data),
        )


@dataclass(kw_only=True)
class Event:
    """One Server-Sent Event of a generation.

    ``type`` is ``queued`` (``position``), ``progress`` (``stage``, ``step``, ``total``,
    ``elapsed``, ``estimated_remaining``), ``completed`` (``result``) or ``failed``
    (``error``); other types a newer server sends come through with their ``data``.
    """

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    result: GenerationResult | None = None
    error: GenserveError | None = None

    @property
    def position(self) -> int | None:
        return _opt_int(self.data.get("position"))

    @property
    def stage(self) -> str | None:
        return _opt_str(self.data.get("stage"))

    @property
    def step(self) -> int | None:
        return _opt_int(self.data.get("step"))

    @property
    def total(self) -> int | None:
        return _opt_int(self.data.get("total"))

    @property
    def elapsed(self) -> float | None:
        return _opt_float(self.data.get("elapsed"))

    @property
    def estimated_remaining(self) -> float | None:
        return _opt_float(self.data.get("estimated_remaining"))

    @property
    def fraction(self) -> float | None:
        """``step / total`` of a progress event, else None."""
        step, total = self.step, self.total
        if self.type != "progress" or not total or step is None:
            return None
        return max(0.0, min(1.0, step / total))


@dataclass(kw_only=True)
class GenerationStatus:
    """``GET /api/v1/generations/{id}``: the state; ``result`` once completed."""

    generation_id: str
    type: str = ""
    model: str = ""
    status: str = ""
    """``pending``, ``running``, ``completed``, ``failed`` or ``cancelled``."""
    created_at: str = ""
    completed_at: str | None = None
    progress: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    result: GenerationResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FINAL: ClassVar[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationStatus:
        status = _str(data.get("status"))
        result = result_from_data(data, _str(data.get("type"))) if status == "completed" else None
        return cls(
            generation_id=_str(data.get("generation_id")),
            type=_str(data.get("type")),
            model=_str(data.get("model")),
            status=status,
            created_at=_str(data.get("created_at")),
            completed_at=_opt_str(data.get("completed_at")),
            progress=data.get("progress") if isinstance(data.get("progress"), dict) else None,
            error=data.get("error") if isinstance(data.get("error"), dict) else None,
            result=result,
            extra=_extra(cls, data),
        )

    @property
    def done(self) -> bool:
        return self.status in self.FINAL

    def exception(self) -> GenserveError | None:
        """The error of a failed or cancelled generation, as the SDK would raise it."""
        from genserve.errors import error_from_envelope

        if self.status == "cancelled":
            message = (self.error or {}).get("message") or "The generation was cancelled."
            return error_from_envelope({"code": "generation_cancelled", "error": message})
        if self.status == "failed":
            err = self.error or {}
            return error_from_envelope(
                {
                    "code": err.get("code") or "generation_failed",
                    "error": err.get("message") or "The generation failed.",
                }
            )
        return None


@dataclass(kw_only=True)
class CancelResult:
    """``POST /api/v1/generations/{id}/cancel``."""

    generation_id: str
    status: str = ""
    refunded_points: int = 0
    step_at_cancel: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CancelResult:
        return cls(
            generation_id=_str(data.get("generation_id")),
            status=_str(data.get("status")),
            refunded_points=_int(data.get("refunded_points")),
            step_at_cancel=_opt_int(data.get("step_at_cancel")),
            extra=_extra(cls, data),
        )


# ---------------------------------------------------------------- projects, models, account


@dataclass(kw_only=True)
class Project:
    """One generation in ``GET /api/v1/projects``; ``outputs`` lists every file."""

    id: str
    type: str = ""
    prompt: str = ""
    created_at: str = ""
    url: str | None = None
    thumbnail: str | None = None
    poster: str | None = None
    """A video's poster frame (full size); ``None`` for other kinds."""
    metadata: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    outputs: list[OutputFile] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Project:
        return cls(
            id=_str(data.get("id")),
            type=_str(data.get("type")),
            prompt=_str(data.get("prompt")),
            created_at=_str(data.get("created_at")),
            url=_opt_str(data.get("url")),
            thumbnail=_opt_str(data.get("thumbnail")),
            poster=_opt_str(data.get("poster")),
            metadata=_dict(data.get("metadata")),
            model=_opt_str(data.get("model")),
            outputs=[
                OutputFile.from_dict(o) for o in data.get("outputs") or [] if isinstance(o, dict)
            ],
            extra=_extra(cls, data),
        )

    def _bind(self, http: Any, base_url: str | None) -> None:
        for o in self.outputs:
            o._bind(http, base_url)

    def save(self, folder: PathLike | None = None) -> list[Path]:
        """Downloads every output of the project into ``folder``."""
        target = Path(folder) if folder is not None else Path.cwd()
        target.mkdir(parents=True, exist_ok=True)
        return [o.save(target) for o in self.outputs]


@dataclass(kw_only=True)
class Pagination:
    page: int = 1
    limit: int = 20
    total: int = 0
    pages: int = 0
    has_more: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pagination:
        return cls(
            page=_int(data.get("page"), 1),
            limit=_int(data.get("limit"), 20),
            total=_int(data.get("total")),
            pages=_int(data.get("pages")),
            has_more=bool(data.get("has_more")),
            extra=_extra(cls, data),
        )


@dataclass(kw_only=True)
class ProjectPage:
    """One page of projects; iterating it gives its projects."""

    projects: list[Project] = field(default_factory=list)
    pagination: Pagination = field(default_factory=Pagination)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProjectPage:
        return cls(
            projects=[
                Project.from_dict(p) for p in data.get("projects") or [] if isinstance(p, dict)
            ],
            pagination=Pagination.from_dict(_dict(data.get("pagination"))),
            extra=_extra(cls, data),
        )

    def __iter__(self) -> Iterator[Project]:
        return iter(self.projects)

    def __len__(self) -> int:
        return len(self.projects)

    @property
    def has_more(self) -> bool:
        return self.pagination.has_more


@dataclass(kw_only=True)
class ModelInfo:
    """One entry of ``GET /api/v1/models``; the kind's own fields (``aspect_ratios``,
    ``resolutions``, ``duration``, ``texture_quality``...) are in ``extra``."""

    name: str
    kind: str = ""
    default: bool = False
    price: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        return cls(
            name=_str(data.get("name")),
            kind=_str(data.get("kind")),
            default=bool(data.get("default")),
            price=_dict(data.get("price")),
            extra=_extra(cls, data),
        )


@dataclass(kw_only=True)
class Account:
    """``GET /api/v1/account``: plan, points, and this hour's request window."""

    plan: str = ""
    points: int = 0
    limit: int = 0
    remaining: int = 0
    reset: int = 0
    """Unix seconds when the hourly window resets."""
    email: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Account:
        return cls(
            plan=_str(data.get("plan")),
            points=_int(data.get("points")),
            limit=_int(data.get("limit")),
            remaining=_int(data.get("remaining")),
            reset=_int(data.get("reset")),
            email=_opt_str(data.get("email")),
            extra=_extra(cls, data),
        )
