"""A JWKS endpoint in its own process: serves a JSON file, counts the fetches.

    python -m tests.policies.jwks_server JWKS_FILE COUNT_FILE PORT

The test rewrites JWKS_FILE to rotate keys (or to any body: it is served as it is) and
removes it for a 404; every GET appends a line to COUNT_FILE.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    jwks, count, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with count.open("a") as handle:
                handle.write("GET\n")
            try:
                body, status = jwks.read_bytes(), 200
            except FileNotFoundError:
                body, status = b"not found", 404
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
