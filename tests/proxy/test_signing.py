"""``Envroute-Signature`` v2: what the proxy signs and what ``verify_signature`` accepts."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from werkzeug.datastructures import EnvironHeaders, Headers

from envroute import verify_signature
from envroute.signing import identity_headers, metadata_json, sign

SECRET = "whsec-for-tests"
NOW = 1_800_000_000


def signed(metadata: dict[str, Any] | None = None, *, secret: str = SECRET,
           timestamp: int = NOW, key_id: str = "key_abc", environment: str = "sandbox",
           customer_id: str | None = None) -> dict[str, str]:
    meta = metadata_json(metadata if metadata is not None else {"tier": "pro", "customer": "c"})
    headers = {"Envroute-Key-Id": key_id, "Envroute-Environment": environment,
               "Envroute-Metadata": meta,
               "Envroute-Signature": sign(secret, key_id, environment, meta,
                                          customer_id=customer_id, timestamp=timestamp)}
    if customer_id:
        headers["Envroute-Customer-Id"] = customer_id
    return headers


def v2(message: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def test_signature_is_the_documented_hmac_over_five_lf_joined_lines() -> None:
    meta = metadata_json({"tier": "pro", "customer": "cus_1"})
    assert meta == '{"customer":"cus_1","tier":"pro"}'
    expected = v2(f"{NOW}\nkey_abc\nsandbox\ncus_1\n{meta}")
    assert sign(SECRET, "key_abc", "sandbox", meta, customer_id="cus_1",
                timestamp=NOW) == f"t={NOW},v2={expected}"
    no_customer = v2(f"{NOW}\nkey_abc\nsandbox\n\n{meta}")
    assert sign(SECRET, "key_abc", "sandbox", meta, timestamp=NOW) == f"t={NOW},v2={no_customer}"


def test_identity_headers_are_signed_only_with_a_secret() -> None:
    unsigned = dict(identity_headers("key_1", "sandbox", {"b": 1, "a": "é"}))
    assert unsigned == {"Envroute-Key-Id": "key_1", "Envroute-Environment": "sandbox",
                        "Envroute-Metadata": '{"a":"\\u00e9","b":1}'}
    with_customer = dict(identity_headers("key_1", "sandbox", {"b": 1}, SECRET,
                                          customer_id="acme"))
    assert with_customer["Envroute-Customer-Id"] == "acme"
    assert verify_signature(with_customer, SECRET)
    del with_customer["Envroute-Customer-Id"]  # the customer is signed: dropping it fails
    assert not verify_signature(with_customer, SECRET)


def environ_of(headers: dict[str, str]) -> dict[str, Any]:
    return {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}


def django_headers(headers: dict[str, str]) -> Any:
    from django.http.request import HttpHeaders
    return HttpHeaders(environ_of(headers))


@pytest.mark.parametrize("make", [
    pytest.param(lambda h: h, id="dict"),
    pytest.param(lambda h: {k.lower(): v for k, v in h.items()}, id="lower-case-names"),
    pytest.param(lambda h: {k.upper(): v for k, v in h.items()}, id="upper-case-names"),
    pytest.param(lambda h: Headers(list(h.items())), id="werkzeug-headers"),
    pytest.param(lambda h: EnvironHeaders(environ_of(h)), id="werkzeug-environ-headers"),
    pytest.param(environ_of, id="wsgi-environ"),
    pytest.param(lambda h: list(h.items()), id="list-of-pairs"),
    pytest.param(django_headers, id="django-request-headers"),
])
@pytest.mark.parametrize("customer_id", [None, "acme"])
def test_valid_signatures_verify_from_every_header_source(make: Any,
                                                          customer_id: str | None) -> None:
    assert verify_signature(make(signed(customer_id=customer_id)), SECRET, now=NOW + 10)


@pytest.mark.parametrize("headers", [
    pytest.param(signed({}), id="empty-metadata"),
    pytest.param({**signed(), "Envroute-Signature": signed()["Envroute-Signature"]
                  + ",v2=" + "0" * 64}, id="a-second-v2-during-rotation"),
    pytest.param({**signed(), "Envroute-Signature": "v2=" + "0" * 64 + ","
                  + signed()["Envroute-Signature"]}, id="wrong-v2-first"),
    pytest.param(signed(key_id="jane.doe@example.com"), id="key-id-with-dots"),
])
def test_valid_signatures_verify(headers: Any) -> None:
    assert verify_signature(headers, SECRET, now=NOW + 10)


def v1_signature() -> str:
    meta = signed()["Envroute-Metadata"]
    return f"t={NOW},v1=" + v2(f"{NOW}.key_abc.sandbox.{meta}")


def resplit() -> dict[str, str]:
    """0.1's attack: a dotted key id whose v1 signature also verified other boundaries."""
    genuine = signed(key_id="a.production", environment="sandbox")
    return {**genuine, "Envroute-Key-Id": "a", "Envroute-Environment": "production.sandbox"}


@pytest.mark.parametrize(("change", "now"), [
    pytest.param({"Envroute-Key-Id": "key_other"}, NOW, id="key-id-changed"),
    pytest.param({"Envroute-Environment": "production"}, NOW, id="environment-changed"),
    pytest.param({"Envroute-Customer-Id": "other"}, NOW, id="customer-added"),
    pytest.param({"Envroute-Metadata": '{"customer":"c","tier":"enterprise"}'}, NOW,
                 id="metadata-changed"),
    pytest.param({"Envroute-Metadata": '{"tier":"pro","customer":"c"}'}, NOW,
                 id="metadata-reordered"),
    pytest.param({"Envroute-Signature": signed(secret="other")["Envroute-Signature"]}, NOW,
                 id="other-secret"),
    pytest.param({"Envroute-Signature": v1_signature()}, NOW, id="v1-is-retired"),
    pytest.param({"Envroute-Signature": f"t={NOW}"}, NOW, id="no-v2"),
    pytest.param({"Envroute-Signature": "v2=" + "0" * 64}, NOW, id="no-timestamp"),
    pytest.param({"Envroute-Signature": "garbage"}, NOW, id="garbage"),
    pytest.param({"Envroute-Signature": ""}, NOW, id="empty"),
    pytest.param({"Envroute-Signature": "t=" + "9" * 5000 + ",v2=" + "0" * 64}, NOW,
                 id="timestamp-of-5000-digits"),
    pytest.param({"Envroute-Signature": "t=" + "1" * 13 + ",v2=" + "0" * 64}, NOW,
                 id="timestamp-of-13-digits"),
    pytest.param({"Envroute-Signature": f"t=²{NOW},v2=" + "0" * 64}, NOW,
                 id="timestamp-with-unicode-digit"),
    pytest.param({"Envroute-Signature": f"t=-{NOW},v2=" + "0" * 64}, NOW, id="negative-t"),
    pytest.param({"Envroute-Signature": f"t={NOW},t={NOW},"
                  + signed()["Envroute-Signature"].split(",")[1]}, NOW, id="two-timestamps"),
    pytest.param({"Envroute-Signature": signed()["Envroute-Signature"].upper()}, NOW,
                 id="upper-case-hex"),
    pytest.param({"Envroute-Signature": "t=1,v2=\udcff"}, NOW, id="surrogate"),
    pytest.param({"Envroute-Key-Id": "k\udcff"}, NOW, id="surrogate-in-key-id"),
    pytest.param({}, NOW + 301, id="stale"),
    pytest.param({}, NOW - 301, id="from-the-future"),
])
def test_tampered_malformed_or_stale_signatures_fail(change: dict[str, str],
                                                     now: int) -> None:
    assert not verify_signature({**signed(), **change}, SECRET, now=now)


def test_fields_cannot_be_resplit() -> None:
    assert not verify_signature(resplit(), SECRET, now=NOW)


def doubled(name: str) -> list[tuple[str, str]]:
    headers = signed(customer_id="acme")
    return [*headers.items(), (name.lower(), "x" if name != "Envroute-Signature"
                               else headers[name])]


@pytest.mark.parametrize("name", ["Envroute-Key-Id", "Envroute-Environment",
                                  "Envroute-Customer-Id", "Envroute-Metadata",
                                  "Envroute-Signature"])
@pytest.mark.parametrize("container", [list, Headers])
def test_a_repeated_identity_header_fails(name: str, container: Any) -> None:
    assert verify_signature(signed(customer_id="acme"), SECRET, now=NOW)
    assert not verify_signature(container(doubled(name)), SECRET, now=NOW)


def test_a_case_variant_duplicate_in_a_dict_fails() -> None:
    headers: dict[str, str] = {**signed(), "envroute-key-id": "key_other"}
    assert not verify_signature(headers, SECRET, now=NOW)


@pytest.mark.parametrize("headers", [
    pytest.param(None, id="none"),
    pytest.param(42, id="a-number"),
    pytest.param([("a",)], id="bad-pairs"),
    pytest.param({1: 2, "Envroute-Key-Id": 3}, id="non-string-values"),
    pytest.param("Envroute-Key-Id", id="a-string"),
])
def test_malformed_input_is_false_never_an_exception(headers: Any) -> None:
    assert verify_signature(headers, SECRET, now=NOW) is False


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
    digest = v2(f"{NOW}\nkey_abc\nsandbox\n\n{forged['Envroute-Metadata']}", secret="")
    forged["Envroute-Signature"] = f"t={NOW},v2={digest}"
    assert not verify_signature(forged, "", now=NOW)
    with pytest.raises(ValueError, match="signing_secret"):
        sign("", "key", "sandbox", "{}")


def test_real_clock_round_trip() -> None:
    assert verify_signature(dict(identity_headers("k", "sandbox", {}, SECRET)), SECRET)
