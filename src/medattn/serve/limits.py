"""Limits on what a client may send: bytes, pixels, files, formats (sniffed from content).

The request body is capped by an ASGI middleware before it is parsed (``Content-Length`` is
checked up front; a chunked body is counted as it streams), each upload's pixel count is read
from its header before the pixels are decoded, and the format comes from the bytes, never from
the file name. Every refusal is an :class:`HTTPError` with a 4xx status and a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from medattn.decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_FORMATS,
    ImageTooLargeError,
    UnsupportedImageError,
    read_image,
)
from medattn.errors import BundleError, ConfigError, DataError, MedattnError, ModelError

__all__ = ["Limits", "HTTPError", "BodySizeLimit", "decode_upload", "status_for"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """What one request may carry.

    Attributes:
        max_upload_bytes: largest single file.
        max_files: most files in one ``/v1/predict`` request.
        max_pixels: largest width × height (checked from the header, before decoding).
        formats: accepted formats, sniffed from content.
        timeout_s: longest wait for a result before the request fails with 503.
    """

    max_upload_bytes: int = 16 << 20
    max_files: int = 16
    max_pixels: int = DEFAULT_MAX_PIXELS
    formats: tuple[str, ...] = IMAGE_FORMATS
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        bad = sorted(set(self.formats) - set(IMAGE_FORMATS))
        if bad:
            raise ConfigError(f"unknown image formats {bad}; valid: {', '.join(IMAGE_FORMATS)}")
        for name in ("max_upload_bytes", "max_files", "max_pixels"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"limit {name} must be >= 1, got {getattr(self, name)}")

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: every file at its limit plus room for the multipart framing."""
        return self.max_upload_bytes * self.max_files + (1 << 20)


class HTTPError(Exception):
    """An error answered with ``status`` and a JSON body ``{"error": code, "detail": message}``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def status_for(exc: BaseException) -> HTTPError:
    """Map a medattn error to the HTTP error a client should see (always 4xx)."""
    if isinstance(exc, HTTPError):
        return exc
    if isinstance(exc, ImageTooLargeError):
        return HTTPError(413, "too_large", str(exc))
    if isinstance(exc, UnsupportedImageError):
        return HTTPError(415, "unsupported_format", str(exc))
    if isinstance(exc, (DataError, ConfigError, ModelError, BundleError)):
        return HTTPError(422, "invalid_input", str(exc))
    if isinstance(exc, MedattnError):
        return HTTPError(400, "bad_request", str(exc))
    return HTTPError(400, "bad_request", f"{type(exc).__name__}: {str(exc)[:200]}")


def decode_upload(data: bytes, filename: str, limits: Limits, decode: Callable[..., Any] | None = None) -> Any:
    """Decode one uploaded file within ``limits`` (raises :class:`HTTPError`) by ``decode`` (a
    predictor's :meth:`~medattn.bundle.Predictor.decode`; default: the one decoder, RGB)."""
    from medattn.decode import sniff_format

    label = f"'{filename or 'upload'}'"
    if len(data) > limits.max_upload_bytes:
        raise HTTPError(413, "too_large", f"{label} is {len(data):,} bytes; the limit is {limits.max_upload_bytes:,}")
    if not data:
        raise HTTPError(422, "invalid_input", f"{label} is empty")
    fmt = sniff_format(data[:132])
    if fmt not in limits.formats:
        what = "not an image" if fmt is None else f"a {fmt.upper()} file, which this server does not accept"
        raise HTTPError(415, "unsupported_format", f"{label} is {what}; accepted: {', '.join(limits.formats)}")
    try:
        if decode is not None:
            return decode(data, name=label)
        return read_image(data, max_pixels=limits.max_pixels, name=label)
    except MedattnError as exc:
        raise status_for(exc) from None


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, before parsing them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _reply(send, 400, "bad_request", "Content-Length is not a number")
                return
            if size > self.max_bytes:
                await _reply(send, 413, "too_large",
                             f"request body of {size:,} bytes exceeds the limit of {self.max_bytes:,}")
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return msg

        async def tracked(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _reply(send, 413, "too_large", f"request body exceeds the limit of {self.max_bytes:,} bytes")


class _TooLarge(Exception):
    pass


async def _reply(send: Send, status: int, code: str, detail: str) -> None:
    import json

    body = json.dumps({"error": code, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
