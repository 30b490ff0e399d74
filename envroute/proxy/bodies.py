"""Bodies in both directions, streamed in pieces of at most :data:`CHUNK_SIZE`.

The caller's body is read from ``wsgi.input`` as it is sent upstream (with its
``Content-Length``, or chunked when the caller sent it chunked), so memory stays flat
whatever its size. A body the gateway cannot read (broken chunked encoding, a body shorter
than its ``Content-Length``) is the caller's fault: it raises
:class:`~envroute.errors.BadRequestBody` (``400 invalid_request``), never a ``502`` blamed
on the backend.

The upstream's body is passed on as each piece arrives, byte for byte
(``decode_content=False``). The proxy reads the first piece *before* the response starts
(see :func:`first_piece`), so an upstream that sends its head and then dies is still a
clean ``502``; once bytes have reached the caller, a failure raises from the iterator,
which makes the WSGI server drop the connection: a truncated body is never passed off as
a complete one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO

from ..errors import BackendUnavailable
from ..typing import WSGIEnvironment
from .failures import reason
from .wire import Response

logger = logging.getLogger("envroute")

#: Most bytes read from the caller or the upstream at a time: memory stays flat whatever
#: the body's size. Measured under gunicorn: 64 KiB reads of ``wsgi.input`` cost twice the
#: CPU of 256 KiB reads and halve upload throughput; larger reads gain nothing more.
CHUNK_SIZE = 256 * 1024


class ClientBodyError(Exception):
    """Reading the caller's body failed (it hung up, sent too little, or broke its chunked
    encoding). Deliberately not an ``OSError``, so that sending lets it through instead of
    blaming the upstream."""


class RequestBody:
    """The caller's body as an iterable of chunks, read from ``wsgi.input`` on demand.

    ``length`` is ``CONTENT_LENGTH`` (sent as is) or ``None`` for a chunked body
    (``wsgi.input_terminated`` with ``Transfer-Encoding: chunked``), which goes upstream
    chunked. ``started`` becomes true once a byte has been handed on: from then on the
    request cannot be replayed to another backend.
    """

    __slots__ = ("length", "started", "stream")

    def __init__(self, stream: IO[bytes] | None, length: int | None) -> None:
        self.stream = stream
        self.length = length
        self.started = False

    @classmethod
    def from_environ(cls, environ: WSGIEnvironment) -> RequestBody | None:
        """The caller's body; None when there is none (no or a zero ``Content-Length``,
        not chunked, or no ``wsgi.input``)."""
        content_length = environ.get("CONTENT_LENGTH")
        if content_length:
            try:
                length = int(content_length)
            except ValueError:
                length = -1
            if length >= 0:
                stream = environ.get("wsgi.input")
                return cls(stream, length) if length and stream is not None else None
        if (environ.get("wsgi.input_terminated")
                and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()):
            stream = environ.get("wsgi.input")
            return cls(stream, None) if stream is not None else None
        return None

    def __bool__(self) -> bool:
        return self.stream is not None and self.length != 0

    def __iter__(self) -> Iterator[bytes]:
        if not self:
            return
        assert self.stream is not None
        remaining = self.length
        while remaining is None or remaining > 0:
            size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            try:
                chunk = self.stream.read(size)
            except Exception as exc:  # the server's reader: its own error types
                raise ClientBodyError(f"the request body cannot be read "
                                      f"({type(exc).__name__})") from exc
            if not chunk:
                if remaining is None:
                    return
                raise ClientBodyError(f"the request body is {remaining} bytes short of "
                                      "its Content-Length")
            if remaining is not None:
                remaining -= len(chunk)
            self.started = True
            yield chunk


def first_piece(raw: Response) -> bytes:
    """The first piece of the upstream's body (``b""``: it is empty).

    Read before the response starts: an upstream that sent its head and then died or
    reset the connection is then still a ``502 backend_unavailable`` problem instead of
    a half-started response that the WSGI server turns into its own ``500``.
    """
    return raw.read1(CHUNK_SIZE)


class ResponseBody:
    """The upstream's body, piece by piece as it arrives; raises if the upstream dies."""

    __slots__ = ("_backend", "_first", "_raw", "_sent")

    def __init__(self, raw: Response, backend: str, first: bytes) -> None:
        self._raw = raw
        self._backend = backend
        self._first = first
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        raw = self._raw
        chunk = self._first
        try:
            while chunk:
                self._sent += len(chunk)
                yield chunk
                chunk = raw.read1(CHUNK_SIZE)
        except Exception as exc:
            logger.warning("backend %s broke off its response after %d bytes (%s); "
                           "closing the connection to the caller", self._backend,
                           self._sent, reason(exc))
            raise BackendUnavailable(f"response broke off ({reason(exc)})",
                                     backend=self._backend, retryable=False) from None

    def close(self) -> None:
        # Read to the end, the connection is already back in the pool; otherwise (the
        # caller went away, the upstream broke) it must not be reused: it is closed.
        self._raw.close()


def finish(raw: Response) -> None:
    """Return a body-less response's connection to the pool (or close it if unsure)."""
    try:
        raw.read()
    except Exception:
        raw.close()
