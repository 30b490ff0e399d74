"""HTTPS upstreams: requests' TLS and CA handling holds on the proxy's pooled fast path.

A real TLS server with a self-signed certificate: refused (502, never sent in clear or
unverified) unless ``REQUESTS_CA_BUNDLE`` names its certificate, read when the backend is
built.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.test import EnvironBuilder

from envroute.errors import BackendUnavailable
from envroute.proxy import ProxyBackend
from envroute.settings import BackendSettings


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"over tls " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = self_signed(tmp_path)
    server = HTTPServer(("127.0.0.1", 0), Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def call(proxy: ProxyBackend) -> bytes:
    env = EnvironBuilder("/v1/x").get_environ()
    return b"".join(proxy(env, lambda status, headers: None))  # type: ignore[arg-type]


def test_an_unknown_certificate_is_refused(tls_upstream: tuple[str, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    proxy = ProxyBackend(BackendSettings(name="tls", url=tls_upstream[0]))
    with pytest.raises(BackendUnavailable, match="TLS"):
        call(proxy)
    proxy.close()


def test_the_configured_ca_bundle_verifies(tls_upstream: tuple[str, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_upstream[1]))
    proxy = ProxyBackend(BackendSettings(name="tls", url=tls_upstream[0]))
    assert call(proxy) == b"over tls /v1/x"
    assert call(proxy) == b"over tls /v1/x"  # the pooled connection, reused
    assert proxy.check().startswith(f"{tls_upstream[0]}/ answered ")
    proxy.close()
