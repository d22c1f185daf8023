"""The input image of a request: given inline as base64 or fetched from a URL.

Either way the bytes are held to the contract's limits (20 MB, PNG, JPEG or
WebP, 50 megapixels) and fully decoded once here, so that nothing reaches the
debit or the inference server that Pillow could not open within those limits.
Size is refused before the expensive step each time: the base64 length before
decoding it, the pixel count from the header before decompressing pixels.
Decoding runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import binascii
import io
import re
import ssl
import threading
import warnings
from dataclasses import dataclass

from PIL import Image

from genserve.vocabulary import MAX_INPUT_PIXELS
from rest_bridge.edge.errors import ApiError, validation_error
from rest_bridge.outbound.address_policy import AddressPolicy, Resolver
from rest_bridge.outbound.safe_fetch import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_TIMEOUT_S,
    fetch_url,
    payload_too_large,
)

DEFAULT_MAX_PIXELS = MAX_INPUT_PIXELS

_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
_DATA_URL_PREFIX = re.compile(
    r"data:(?:[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+)?(?:;[a-z0-9_.+-]+=[a-z0-9_.+-]+)*;base64,",
    re.IGNORECASE,
)
_ASCII_WHITESPACE = re.compile(r"[ \t\r\n\f]+")
_ONE_OF_MESSAGE = "give exactly one of image_url and image_base64"

# warnings.catch_warnings swaps a process-wide filter list; two threads doing it at
# once can restore each other's filters. Only the open step can warn, so only it
# is serialised.
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class DecodedImage:
    """Image bytes proven to decode, with what the header said about them.

    ``data`` is the original encoding, passed on as received rather than
    re-encoded, so the model sees exactly what the client sent.
    """

    data: bytes
    format: str
    width: int
    height: int


def _megapixels(max_pixels: int) -> str:
    return f"{max_pixels / 1_000_000:g} megapixels"


def decode_base64_image(
    value: str, *, max_bytes: int = DEFAULT_MAX_BYTES, field: str = "image_base64"
) -> bytes:
    """The bytes ``value`` encodes, with or without a ``data:...;base64,`` prefix.

    Strict base64 (standard alphabet, canonical padding; line breaks are
    tolerated because common encoders insert them). A value whose length alone
    implies more than ``max_bytes`` is refused with 413 before any decoding.
    """
    payload = value.strip()
    if payload[:5].lower() == "data:":
        prefix = _DATA_URL_PREFIX.match(payload)
        if prefix is None:
            raise validation_error(field, "a data URL must be of the form data:image/...;base64,")
        payload = payload[prefix.end() :]
    encoded_limit = 4 * -(-max_bytes // 3)
    # Whitespace is at most a few percent of real input; a value that is still too
    # long at twice the limit is refused without copying it.
    if len(payload) > 2 * encoded_limit:
        raise payload_too_large(field, max_bytes)
    payload = _ASCII_WHITESPACE.sub("", payload)
    if len(payload) > encoded_limit:
        raise payload_too_large(field, max_bytes)
    if not payload:
        raise validation_error(field, "must not be empty")
    # a2b_base64's strict mode still tolerates surplus "=", so padding is checked here.
    if len(payload) % 4 or "=" in payload[:-2]:
        raise validation_error(field, "is not valid base64")
    try:
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise validation_error(field, "is not valid base64") from None
    if len(data) > max_bytes:
        raise payload_too_large(field, max_bytes)
    return data


def _not_an_image(field: str) -> ApiError:
    return validation_error(field, "must be a PNG, JPEG or WebP image")


def _too_many_pixels(field: str, max_pixels: int) -> ApiError:
    return validation_error(field, f"the image is larger than {_megapixels(max_pixels)}")


def validate_image_bytes(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, field: str = "image"
) -> DecodedImage:
    """Prove ``data`` is a PNG, JPEG or WebP of at most ``max_pixels`` that decodes.

    Blocking and CPU-bound: call it through ``asyncio.to_thread``. Only those
    three decoders are tried, so Pillow's other parsers never see client data.
    Pillow's decompression-bomb warning is raised as an error while opening.
    Any failure inside Pillow on hostile bytes is the client's 422, not our 500,
    which is why the guards below catch broadly.
    """
    if not data:
        raise _not_an_image(field)
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(field, max_pixels) from None
    except Exception:
        raise _not_an_image(field) from None
    with image:
        width, height = image.size
        image_format = _FORMATS.get(image.format or "")
        if image_format is None or width <= 0 or height <= 0:
            raise _not_an_image(field)
        if width * height > max_pixels:
            raise _too_many_pixels(field, max_pixels)
        try:
            image.load()
        except Exception:
            raise validation_error(field, "the image could not be decoded") from None
    return DecodedImage(data=data, format=image_format, width=width, height=height)


async def load_image_input(
    image_url: str | None,
    image_base64: str | None,
    *,
    policy: AddressPolicy,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resolver: Resolver | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    ssl_context: ssl.SSLContext | None = None,
) -> DecodedImage:
    """The request's one input image, validated, or an :class:`ApiError`.

    ``None`` means the field was absent; an empty string counts as given (and
    then fails its own validation), so a client never has one field silently
    ignored.
    """
    if image_url is not None and image_base64 is None:
        field = "image_url"
        data = await fetch_url(
            image_url,
            policy=policy,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            max_redirects=max_redirects,
            resolver=resolver,
            field=field,
            ssl_context=ssl_context,
        )
    elif image_base64 is not None and image_url is None:
        field = "image_base64"
        data = await asyncio.to_thread(
            decode_base64_image, image_base64, max_bytes=max_bytes, field=field
        )
    else:
        raise ApiError(
            status=422,
            code="validation_error",
            message=f"image_url, image_base64: {_ONE_OF_MESSAGE}",
            details=[
                {"field": "image_url", "message": _ONE_OF_MESSAGE},
                {"field": "image_base64", "message": _ONE_OF_MESSAGE},
            ],
        )
    return await asyncio.to_thread(validate_image_bytes, data, max_pixels=max_pixels, field=field)
