"""Blob stores: where output files live. A local folder by default, or an S3-compatible bucket."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

log = logging.getLogger("storage.blobs")

_SAFE_KEY = re.compile(r"^[0-9a-f]{32}/[A-Za-z0-9._-]{1,200}$")

MEDIA_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "glb": "model/gltf-binary",
}


def media_type(name: str) -> str:
    """The media type of an output file, from its extension."""
    return MEDIA_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")


class RangeNotSatisfiable(Exception):
    """The asked bytes start past the end of a file of ``size`` bytes (HTTP 416)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"no such bytes in a file of {size}")
        self.size = size


class StoreUnavailable(Exception):
    """The store could not be reached, read or written (a bucket away, a folder unwritable).

    Its message is the operator's (it may name hosts or paths); clients get ``storage_error``.
    """


_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$", re.ASCII)
_PAST_ANY_END = 2**62
"""What a position of more than 18 digits stands for: past the end of any file."""


def _position(digits: str) -> int | None:
    if not digits:
        return None
    return _PAST_ANY_END if len(digits) > 18 else int(digits)


def parse_range(header: str | None) -> tuple[int | None, int | None] | None:
    """One byte range of a ``Range`` header: ``(first, last)``; ``(None, n)`` the last n bytes.

    ``None`` for no header, several ranges or a malformed one: the whole file is
    then served, as HTTP lets a server do with a range it does not take.
    """
    found = _RANGE.match(header.strip()) if header else None
    if found is None or found.group(1) == found.group(2) == "":
        return None
    first, last = _position(found.group(1)), _position(found.group(2))
    if last == _PAST_ANY_END:  # to the end, whatever the file's size
        if first is None:
            return None
        last = None
    if first is not None and last is not None and last < first:
        return None
    return first, last


def resolve_range(byte_range: tuple[int | None, int | None], size: int) -> tuple[int, int]:
    """``(first, last)`` inclusive within a file of ``size`` bytes; past its end is a 416."""
    first, last = byte_range
    if first is None:  # the last ``last`` bytes
        suffix = last or 0
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(size - suffix, 0), size - 1
    if first >= size:
        raise RangeNotSatisfiable(size)
    return first, size - 1 if last is None else min(last, size - 1)


class _Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class OpenBlob:
    """A stored file opened for reading: its size, and its bytes in chunks.

    Iterating reads the chunks (blocking: call it off the event loop) and closes the
    reader at the end; ``close`` may be called any number of times.
    """

    CHUNK = 256 * 1024

    def __init__(
        self, reader: _Reader, size: int, first: int = 0, total: int | None = None
    ) -> None:
        self._reader = reader
        self.size = size
        """The bytes this blob reads: the whole file, or the range asked for."""
        self.first = first
        """The offset of its first byte in the file."""
        self.total = size if total is None else total
        """The whole file's size."""
        self._closed = False

    @property
    def partial(self) -> bool:
        return self.size != self.total

    def content_range(self) -> str:
        """The ``Content-Range`` of a partial answer: ``bytes first-last/total``."""
        return f"bytes {self.first}-{self.first + self.size - 1}/{self.total}"

    def __iter__(self) -> Iterator[bytes]:
        try:
            while chunk := self._reader.read(self.CHUNK):
                yield chunk
        finally:
            self.close()

    def read(self) -> bytes:
        """Every byte (for small files and tests); closes the blob."""
        return b"".join(self)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._reader.close()

    def __enter__(self) -> OpenBlob:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BlobStore(Protocol):
    """Stores immutable files under ``<token>/<file name>`` keys.

    Every method blocks (disk or network): the bridge calls them on worker threads.
    """

    def put(self, key: str, data: bytes) -> None:
        """Stores ``data`` whole under ``key``; a bad key raises ``ValueError``."""
        ...

    def delete(self, key: str) -> None:
        """Removes ``key``; a missing key is no error."""
        ...

    def path(self, key: str) -> Path | None:
        """A local file holding ``key``, where the store keeps one; otherwise ``None``."""
        ...

    def open(
        self, key: str, byte_range: tuple[int | None, int | None] | None = None
    ) -> OpenBlob | None:
        """The stored file, or the bytes of ``byte_range`` (``parse_range``'s), opened for reading.

        ``None`` for a missing or malformed key; a range past the end raises
        ``RangeNotSatisfiable``.
        """
        ...


def check_key(key: str) -> str:
    if not _SAFE_KEY.match(key) or ".." in key:
        raise ValueError(f"not a blob key: {key!r}")
    return key


def range_header(byte_range: tuple[int | None, int | None]) -> str:
    """``parse_range``'s range as a ``Range`` header again (what S3 is asked)."""
    first, last = byte_range
    return f"bytes={'' if first is None else first}-{'' if last is None else last}"


class _Limited:
    """At most ``remaining`` bytes of ``reader``: a range of a local file."""

    def __init__(self, reader: _Reader, remaining: int) -> None:
        self._reader = reader
        self._remaining = remaining

    def read(self, size: int, /) -> bytes:
        chunk = self._reader.read(min(size, self._remaining)) if self._remaining > 0 else b""
        self._remaining -= len(chunk)
        return chunk

    def close(self) -> None:
        self._reader.close()


class LocalBlobStore:
    """A folder; writes go to a temporary file renamed into place, so none is ever half-written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _target(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        target = self._target(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        except OSError as exc:
            raise StoreUnavailable(f"cannot write under {self.root}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreUnavailable(f"cannot write under {self.root}: {exc}") from exc
            raise

    def delete(self, key: str) -> None:
        target = self._target(key)
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot delete under {self.root}: {exc}") from exc
        try:
            target.parent.rmdir()
        except OSError:
            pass

    def path(self, key: str) -> Path | None:
        try:
            target = self._target(key)
        except ValueError:
            return None
        return target if target.is_file() else None

    def open(
        self, key: str, byte_range: tuple[int | None, int | None] | None = None
    ) -> OpenBlob | None:
        try:
            fh = self._target(key).open("rb")
        except ValueError:
            return None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            if self.root.is_dir():
                return None
            raise StoreUnavailable(f"{self.root} is not a folder (unmounted?)") from exc
        except OSError as exc:
            raise StoreUnavailable(f"cannot read under {self.root}: {exc}") from exc
        size = os.fstat(fh.fileno()).st_size
        if byte_range is None:
            return OpenBlob(fh, size)
        try:
            first, last = resolve_range(byte_range, size)
        except RangeNotSatisfiable:
            fh.close()
            raise
        fh.seek(first)
        return OpenBlob(_Limited(fh, last - first + 1), last - first + 1, first, size)


class S3BlobStore:
    """An S3-compatible bucket: the key ``<token>/<file name>`` is the object ``<prefix>/<key>``.

    The endpoint, credentials and region come from boto3's own sources (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, config files,
    instance roles). One synchronous client, created here, is shared by every thread.
    """

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        if not bucket:
            raise ValueError("S3BlobStore needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3", config=Config(retries={"mode": "standard"}, max_pool_connections=32)
            )
        self.client = client

    def object_key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        object_key = self.object_key(key)
        with self._reaching("write"):
            self.client.put_object(
                Bucket=self.bucket, Key=object_key, Body=data, ContentType=media_type(key)
            )

    def delete(self, key: str) -> None:
        object_key = self.object_key(key)
        with self._reaching("delete"):
            self.client.delete_object(Bucket=self.bucket, Key=object_key)

    @contextmanager
    def _reaching(self, what: str) -> Iterator[None]:
        """The bucket's failures (away, refusing, erring) as ``StoreUnavailable``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailable(f"cannot {what} in {self!r}: {exc}") from exc

    def path(self, key: str) -> Path | None:
        return None

    def open(
        self, key: str, byte_range: tuple[int | None, int | None] | None = None
    ) -> OpenBlob | None:
        from botocore.exceptions import ClientError

        try:
            object_key = self.object_key(key)
        except ValueError:
            return None
        ranged = {} if byte_range is None else {"Range": range_header(byte_range)}
        with self._reaching("read"):
            try:
                if byte_range is not None and (byte_range[0] or 0) >= _PAST_ANY_END:
                    head = self.client.head_object(Bucket=self.bucket, Key=object_key)
                    raise RangeNotSatisfiable(int(head["ContentLength"]))
                reply = self.client.get_object(Bucket=self.bucket, Key=object_key, **ranged)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                if error.get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return None
                if error.get("Code") == "InvalidRange":  # S3 names the object's size
                    actual = str(error.get("ActualObjectSize", "0"))
                    raise RangeNotSatisfiable(int(actual) if actual.isdigit() else 0) from exc
                raise
        size = int(reply["ContentLength"])
        content_range = reply.get("ContentRange")  # "bytes first-last/total", when partial
        if not content_range:
            return OpenBlob(reply["Body"], size)
        span, _, total = content_range.removeprefix("bytes ").partition("/")
        return OpenBlob(reply["Body"], size, int(span.partition("-")[0]), int(total))

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"


def blob_store_from_url(url: str | None, local_root: Path) -> BlobStore:
    """The store ``GENSERVE_BLOB_URL`` names: ``s3://bucket/prefix``, else the local folder."""
    if not url:
        return LocalBlobStore(local_root)
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"GENSERVE_BLOB_URL {url!r}: no bucket (s3://bucket/prefix)")
        store = S3BlobStore(parts.netloc, parts.path)
        log.info("blobs: bucket %s, prefix %r", store.bucket, store.prefix)
        return store
    raise ValueError(f"GENSERVE_BLOB_URL {url!r}: only s3://bucket/prefix is supported")
