"""``envroute serve``: the gateway on werkzeug's development server, with two guards.

For trying envroute out and for development. In production run the gateway under
gunicorn behind a buffering proxy or load balancer (see the README's production
section); this server is werkzeug's, one thread per connection.

Guards, and the risks they close:

- A port that is busy (or a host that cannot be bound) is one line, raised as
  :class:`~envroute.errors.EnvrouteError` *before* anything says "serving on", instead
  of werkzeug's several lines and ``sys.exit``: a script or a supervisor sees one clear
  failure, never a server that claims to be up.
- A request carrying both ``Content-Length`` and ``Transfer-Encoding``, a transfer
  coding other than ``chunked``, or ``Content-Length`` values that disagree is refused
  with ``400 invalid_request`` and the connection is closed. werkzeug's server prefers
  ``Content-Length`` over chunked, while a proxy in front may have preferred the chunked
  framing (RFC 9112 §6.1): the two would disagree about where the request ends, and the
  rest would be read as the next request on the kept-alive connection (request
  smuggling).
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .errors import EnvrouteError
from .problems import Problem

if TYPE_CHECKING:
    from email.message import Message

    from .typing import WSGIApplication


def _ambiguous_framing(headers: Message) -> str:
    """Why the request's framing is ambiguous, or ``""`` when it is not."""
    lengths = headers.get_all("Content-Length") or []
    encodings = headers.get_all("Transfer-Encoding") or []
    if lengths and encodings:
        return "a request may not carry both Content-Length and Transfer-Encoding"
    if encodings:
        codings = [c.strip().lower() for value in encodings for c in value.split(",")]
        if codings != ["chunked"]:
            return "the only transfer coding accepted on a request is chunked"
    if lengths:
        values = {v.strip() for value in lengths for v in value.split(",")}
        if len(values) != 1 or not all(v.isascii() and v.isdigit() for v in values):
            return "the request's Content-Length values disagree"
    return ""


class RequestHandler(WSGIRequestHandler):
    """werkzeug's handler, refusing requests whose framing is ambiguous."""

    def run_wsgi(self) -> None:
        reason = _ambiguous_framing(self.headers)
        if not reason:
            super().run_wsgi()
            return
        from .gateway import new_request_id  # the gateway imports much; only when refusing

        request_id = new_request_id()
        problem = Problem("invalid_request", reason)
        body = problem.body(request_id)
        self.close_connection = True
        self.send_response(problem.status)
        for name, value in problem.response_headers(request_id, body):
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; one-line :class:`EnvrouteError` if it can't."""
    try:
        return socket.create_server((host, port), backlog=128)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EnvrouteError(f"cannot listen on {host}:{port}: {reason}"
                            + (" (is another server running there? pass --port)"
                               if exc.errno == errno.EADDRINUSE else "")) from None


def build_server(app: WSGIApplication, host: str = "127.0.0.1",
                 port: int = 8080) -> BaseWSGIServer:
    """The threaded development server, already listening (so a busy port fails here)."""
    listener = bind(host, port)
    try:
        return make_server(host, port, app, threaded=True, request_handler=RequestHandler,
                           fd=listener.fileno())
    finally:
        listener.close()  # werkzeug holds its own duplicate of the socket


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def serve(app: WSGIApplication, host: str = "127.0.0.1", port: int = 8080, *,
          announce: Callable[[str], None] = _stderr) -> None:
    """Serve ``app`` until interrupted; ``announce`` gets the "serving on" line only
    once the port is bound. Raises :class:`EnvrouteError` (one line) if it can't be."""
    server = build_server(app, host, port)
    werkzeug_log = logging.getLogger("werkzeug")
    if werkzeug_log.level == logging.NOTSET:  # the gateway logs each request itself
        werkzeug_log.setLevel(logging.WARNING)  # (envroute.access): one line, not two
    bound = server.socket.getsockname()[1]
    announce(f"envroute: serving on http://{host}:{bound} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = ["RequestHandler", "build_server", "serve"]
