"""``Envroute-Signature``: what the proxy signs and what ``verify_signature`` accepts."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from werkzeug.datastructures import Headers

from envroute import verify_signature
from envroute.signing import identity_headers, metadata_json, sign

SECRET = "whsec-for-tests"
NOW = 1_800_000_000


def signed(metadata: dict[str, Any] | None = None, *, secret: str = SECRET,
           timestamp: int = NOW) -> dict[str, str]:
    meta = metadata_json(metadata if metadata is not None else {"tier": "pro", "customer": "c"})
    return {"Envroute-Key-Id": "key_abc", "Envroute-Environment": "sandbox",
            "Envroute-Metadata": meta,
            "Envroute-Signature": sign(secret, "key_abc", "sandbox", meta, timestamp=timestamp)}


def test_signature_is_the_documented_hmac() -> None:
    meta = metadata_json({"tier": "pro", "customer": "cus_1"})
    assert meta == '{"customer":"cus_1","tier":"pro"}'
    expected = hmac.new(SECRET.encode(), f"{NOW}.key_abc.sandbox.{meta}".encode(),
                        hashlib.sha256).hexdigest()
    assert sign(SECRET, "key_abc", "sandbox", meta, timestamp=NOW) == f"t={NOW},v1={expected}"


def test_identity_headers_are_signed_only_with_a_secret() -> None:
    unsigned = dict(identity_headers("key_1", "sandbox", {"b": 1, "a": "é"}))
    assert unsigned == {"Envroute-Key-Id": "key_1", "Envroute-Environment": "sandbox",
                        "Envroute-Metadata": '{"a":"\\u00e9","b":1}'}
    signed_headers = dict(identity_headers("key_1", "sandbox", {"b": 1}, SECRET))
    assert verify_signature(signed_headers, SECRET)


@pytest.mark.parametrize("headers", [
    pytest.param(signed(), id="dict"),
    pytest.param({k.lower(): v for k, v in signed().items()}, id="lower-case-names"),
    pytest.param({k.upper(): v for k, v in signed().items()}, id="upper-case-names"),
    pytest.param(Headers(list(signed().items())), id="werkzeug-headers"),
    pytest.param({"HTTP_" + k.upper().replace("-", "_"): v for k, v in signed().items()},
                 id="wsgi-environ"),
    pytest.param(signed({}), id="empty-metadata"),
    pytest.param({**signed(), "Envroute-Signature": signed()["Envroute-Signature"]
                  + ",v1=" + "0" * 64}, id="a-second-v1-during-rotation"),
    pytest.param({**signed(), "Envroute-Signature": "v1=0000,"
                  + signed()["Envroute-Signature"]}, id="wrong-v1-first"),
])
def test_valid_signatures_verify(headers: Any) -> None:
    assert verify_signature(headers, SECRET, now=NOW + 10)


@pytest.mark.parametrize(("change", "now"), [
    pytest.param({"Envroute-Key-Id": "key_other"}, NOW, id="key-id-changed"),
    pytest.param({"Envroute-Environment": "production"}, NOW, id="environment-changed"),
    pytest.param({"Envroute-Metadata": '{"customer":"c","tier":"enterprise"}'}, NOW,
                 id="metadata-changed"),
    pytest.param({"Envroute-Metadata": '{"tier":"pro","customer":"c"}'}, NOW,
                 id="metadata-reordered"),
    pytest.param({"Envroute-Signature": signed(secret="other")["Envroute-Signature"]}, NOW,
                 id="other-secret"),
    pytest.param({"Envroute-Signature": f"t={NOW}"}, NOW, id="no-v1"),
    pytest.param({"Envroute-Signature": "v1=" + "0" * 64}, NOW, id="no-timestamp"),
    pytest.param({"Envroute-Signature": "garbage"}, NOW, id="garbage"),
    pytest.param({"Envroute-Signature": ""}, NOW, id="empty"),
    pytest.param({}, NOW + 301, id="stale"),
    pytest.param({}, NOW - 301, id="from-the-future"),
])
def test_tampered_or_stale_signatures_fail(change: dict[str, str], now: int) -> None:
    assert not verify_signature({**signed(), **change}, SECRET, now=now)


@pytest.mark.parametrize("missing", ["Envroute-Key-Id", "Envroute-Environment",
                                     "Envroute-Metadata", "Envroute-Signature"])
def test_a_missing_header_fails(missing: str) -> None:
    headers = signed()
    del headers[missing]
    assert not verify_signature(headers, SECRET, now=NOW)


def test_tolerance_is_configurable_and_defaults_to_five_minutes() -> None:
    assert verify_signature(signed(), SECRET, now=NOW + 300)
    assert not verify_signature(signed(), SECRET, tolerance=60, now=NOW + 61)


def test_an_empty_secret_never_verifies() -> None:
    forged = signed(secret="x")
    digest = hmac.new(b"", f"{NOW}.key_abc.sandbox.{forged['Envroute-Metadata']}".encode(),
                      hashlib.sha256).hexdigest()
    forged["Envroute-Signature"] = f"t={NOW},v1={digest}"
    assert not verify_signature(forged, "", now=NOW)
    with pytest.raises(ValueError, match="signing_secret"):
        sign("", "key", "sandbox", "{}")


def test_real_clock_round_trip() -> None:
    assert verify_signature(dict(identity_headers("k", "sandbox", {}, SECRET)), SECRET)
