"""The input image: base64 and URL sources, size, format, pixel and bomb limits."""

from __future__ import annotations

import base64
import io
import struct
import warnings
import zlib
from collections.abc import Callable

import pytest
from PIL import Image

from rest_bridge.edge.errors import ApiError
from rest_bridge.outbound.address_policy import REFUSED_MESSAGE, AddressPolicy
from rest_bridge.outbound.image_input import (
    DecodedImage,
    decode_base64_image,
    load_image_input,
    validate_image_bytes,
)
from tests.rest_bridge import test_safe_fetch as fetch_tests
from tests.rest_bridge.test_safe_fetch import (
    SECRET,
    LoopbackServer,
    assert_never_echoes,
    body_route,
    refusal,
)

# The loopback server and the no-egress tripwire are shared with the fetch tests;
# binding them here is how pytest finds fixtures defined in another module.
serve = fetch_tests.serve
tripwire = fetch_tests.tripwire

LOOPBACK_ALLOWED = AddressPolicy(allow_loopback=True)


def encoded(size: tuple[int, int] = (6, 4), image_format: str = "PNG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, image_format)
    return buffer.getvalue()


def png_with_header(
    width: int, height: int, idat: bytes = b"", *, bit_depth: int = 8, color_type: int = 2
) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` whatever its data holds."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def zero_bomb(side: int) -> bytes:
    """A real, valid 1-bit PNG of side x side black pixels: kilobytes that inflate hugely."""
    row = bytes(1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return png_with_header(side, side, idat, bit_depth=1, color_type=0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def refused(call: Callable[[], object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


# --- base64 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix", ["", "data:image/png;base64,", "DATA:image/jpeg;base64,", "data:;base64,"]
)
def test_base64_with_or_without_a_data_url_prefix(prefix: str) -> None:
    data = encoded()
    assert decode_base64_image(prefix + b64(data), max_bytes=10_000) == data


def test_base64_line_breaks_are_tolerated() -> None:
    data = encoded((40, 40))
    wrapped = base64.encodebytes(data).decode()
    assert "\n" in wrapped.strip()
    assert decode_base64_image(wrapped, max_bytes=100_000) == data


@pytest.mark.parametrize(
    "value",
    [
        "not base64!!",
        "QUJD=",
        "QUJD====",
        "QQ=A",
        "QUJ",
        "-_-_",
        "QUJD\x00",
        "data:image/png,QUJD",
        "data:image/png;charset=utf-8,QUJD",
        "",
        "data:image/png;base64,",
        "   ",
    ],
)
def test_invalid_base64_is_a_422(value: str) -> None:
    error = refused(lambda: decode_base64_image(value, max_bytes=1000))
    assert (error.status, error.code) == (422, "validation_error")
    assert error.details is not None and error.details[0]["field"] == "image_base64"


@pytest.mark.parametrize("value", ["A" * 1340, "!" * 5000, "data:image/png;base64," + "A" * 1340])
def test_oversized_base64_is_a_413_judged_by_length_alone(value: str) -> None:
    error = refused(lambda: decode_base64_image(value, max_bytes=1000))
    assert (error.status, error.code) == (413, "payload_too_large")


@pytest.mark.parametrize(("size", "accepted"), [(1000, True), (1001, False)])
def test_the_base64_limit_is_on_decoded_bytes(size: int, accepted: bool) -> None:
    value = b64(bytes(size))
    if accepted:
        assert len(decode_base64_image(value, max_bytes=1000)) == size
    else:
        assert refused(lambda: decode_base64_image(value, max_bytes=1000)).status == 413


# --- decoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_format", "name", "mode"),
    [("PNG", "png", "RGBA"), ("JPEG", "jpeg", "RGB"), ("WEBP", "webp", "RGB")],
)
def test_png_jpeg_and_webp_are_accepted(image_format: str, name: str, mode: str) -> None:
    data = encoded((7, 5), image_format, mode)
    decoded = validate_image_bytes(data)
    assert decoded == DecodedImage(data=data, format=name, width=7, height=5)


@pytest.mark.parametrize(
    "data",
    [
        encoded(image_format="GIF", mode="P"),
        encoded(image_format="BMP"),
        encoded(image_format="TIFF"),
        b"<html>" + SECRET + b"</html>",
        b"",
        b"\x89PNG\r\n\x1a\n",
    ],
)
def test_other_formats_and_non_images_are_a_422(data: bytes) -> None:
    error = refused(lambda: validate_image_bytes(data, field="image_url"))
    assert error.message == "image_url: must be a PNG, JPEG or WebP image"
    assert_never_echoes(error)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_a_truncated_image_is_a_422(image_format: str) -> None:
    data = encoded((64, 64), image_format)
    error = refused(lambda: validate_image_bytes(data[: len(data) * 2 // 3]))
    assert error.status == 422


def test_pixel_limit_is_applied_from_the_header_before_decoding() -> None:
    # 60 megapixels and no pixel data: decoding would fail as truncated, so the
    # pixel-limit message proves the refusal came first.
    data = png_with_header(10_000, 6_000)
    error = refused(lambda: validate_image_bytes(data))
    assert error.message == "image: the image is larger than 50 megapixels"


def test_the_pixel_limit_is_configurable() -> None:
    data = encoded((200, 200))
    assert validate_image_bytes(data, max_pixels=40_000).width == 200
    error = refused(lambda: validate_image_bytes(data, max_pixels=39_999))
    assert error.message == "image: the image is larger than 0.039999 megapixels"


def test_a_decompression_bomb_is_refused() -> None:
    bomb = zero_bomb(10_000)
    assert len(bomb) < 64 * 1024
    error = refused(lambda: validate_image_bytes(bomb))
    assert error.message == "image: the image is larger than 50 megapixels"


def test_pillows_bomb_warning_is_an_error_here_and_only_here() -> None:
    filters_before = list(warnings.filters)
    bomb = zero_bomb(10_000)
    error = refused(lambda: validate_image_bytes(bomb, max_pixels=10**9))
    assert error.status == 422
    assert warnings.filters == filters_before


def test_pillows_bomb_error_is_a_422() -> None:
    data = png_with_header(20_000, 20_000)
    error = refused(lambda: validate_image_bytes(data, max_pixels=10**10))
    assert error.message == "image: the image is larger than 10000 megapixels"


# --- the request's one input -------------------------------------------------------


@pytest.mark.parametrize(("url", "inline"), [(None, None), ("http://x.example/a.png", "QUJD")])
async def test_exactly_one_of_url_and_base64(url: str | None, inline: str | None) -> None:
    error = await refusal(load_image_input(url, inline, policy=AddressPolicy()))
    assert (error.status, error.code) == (422, "validation_error")
    assert error.details is not None
    assert [item["field"] for item in error.details] == ["image_url", "image_base64"]


async def test_base64_input_is_decoded_and_validated() -> None:
    data = encoded((9, 8), "JPEG")
    decoded = await load_image_input(
        None, "data:image/jpeg;base64," + b64(data), policy=AddressPolicy()
    )
    assert (decoded.format, decoded.width, decoded.height, decoded.data) == ("jpeg", 9, 8, data)


async def test_base64_input_limits_apply() -> None:
    too_big = await refusal(
        load_image_input(None, b64(bytes(2000)), policy=AddressPolicy(), max_bytes=1000)
    )
    assert too_big.status == 413
    too_many_pixels = await refusal(
        load_image_input(None, b64(encoded((50, 50))), policy=AddressPolicy(), max_pixels=100)
    )
    assert too_many_pixels.details == [
        {"field": "image_base64", "message": "the image is larger than 0.0001 megapixels"}
    ]


async def test_an_empty_url_is_its_own_error() -> None:
    error = await refusal(load_image_input("", None, policy=AddressPolicy()))
    assert error.details is not None and error.details[0]["field"] == "image_url"


async def test_url_input_is_fetched_and_validated(
    serve: Callable[..., LoopbackServer],
) -> None:
    data = encoded((3, 2), "WEBP")
    server = serve({"/img.png": body_route(data, content_type="image/webp")})
    decoded = await load_image_input(server.url(), None, policy=LOOPBACK_ALLOWED)
    assert (decoded.format, decoded.width, decoded.height, decoded.data) == ("webp", 3, 2, data)


@pytest.mark.parametrize("content_type", ["text/html", "image/png"])
async def test_a_fetched_non_image_is_a_422_that_does_not_echo_it(
    content_type: str, serve: Callable[..., LoopbackServer]
) -> None:
    server = serve({"/img.png": body_route(b"<p>" + SECRET + b"</p>", content_type=content_type)})
    error = await refusal(load_image_input(server.url(), None, policy=LOOPBACK_ALLOWED))
    assert error.details == [{"field": "image_url", "message": "must be a PNG, JPEG or WebP image"}]
    assert_never_echoes(error)


async def test_a_fetched_bomb_is_refused(serve: Callable[..., LoopbackServer]) -> None:
    server = serve({"/img.png": body_route(zero_bomb(10_000))})
    error = await refusal(load_image_input(server.url(), None, policy=LOOPBACK_ALLOWED))
    assert error.message == "image_url: the image is larger than 50 megapixels"


async def test_url_input_obeys_the_address_policy(
    serve: Callable[..., LoopbackServer], tripwire: list[object]
) -> None:
    server = serve({"/img.png": body_route(encoded())})
    error = await refusal(load_image_input(server.url(), None, policy=AddressPolicy()))
    assert error.details == [{"field": "image_url", "message": REFUSED_MESSAGE}]
    assert tripwire == []
    assert server.connections == 0


async def test_url_input_size_limit_is_a_413(serve: Callable[..., LoopbackServer]) -> None:
    server = serve({"/img.png": body_route(encoded((64, 64)))})
    error = await refusal(
        load_image_input(server.url(), None, policy=LOOPBACK_ALLOWED, max_bytes=100)
    )
    assert (error.status, error.code) == (413, "payload_too_large")
