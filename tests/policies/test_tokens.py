"""JWTs: real RS256, ES256 and HS256 tokens, every refusal, and a real JWKS server."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.test import Client

from envroute import ConfigError, EnvRouter
from envroute.identity import Identity
from tests.support.processes import free_port, running

from .conftest import GatewayFactory, config

HS_SECRET = "hs-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ISSUER = "https://idp.example/"
AUDIENCE = "https://api.example"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(private_key: Any) -> str:
    data: bytes = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data.decode()


def claims(**changes: Any) -> dict[str, Any]:
    base = {"sub": "user_42", "environment": "sandbox", "org": "acme", "tier": "pro",
            "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300,
            "iat": int(time.time())}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def jwt_section(**changes: Any) -> dict[str, Any]:
    section = {"algorithms": ["RS256", "ES256"], "public_keys": [pem(RSA_KEY), pem(EC_KEY)],
               "issuer": ISSUER, "audience": AUDIENCE, "leeway": "5s",
               "metadata_claims": {"customer": "org", "tier": "tier"}}
    section.update(changes)
    return section


def call(gateway: EnvRouter, token: str, method: str = "GET",
         path: str = "/v1/charges") -> tuple[int, dict[str, Any] | str]:
    response = Client(gateway).open(path, method=method,
                                    headers={"Authorization": f"Bearer {token}"})
    text = response.get_data(as_text=True)
    assert token not in text
    if response.headers["Content-Type"] == "application/problem+json":
        return response.status_code, json.loads(text)
    return response.status_code, text


class Seen:
    """A backend that keeps the identity it was given."""

    identity: Identity | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.identity = environ["envroute.identity"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


@pytest.fixture
def gateway(make_gateway: GatewayFactory, tmp_path: Path) -> EnvRouter:
    return make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}", jwt=jwt_section()))


@pytest.mark.parametrize(("key", "algorithm"), [
    pytest.param(RSA_KEY, "RS256", id="RS256"),
    pytest.param(EC_KEY, "ES256", id="ES256"),
])
def test_public_key_tokens_become_identities(tmp_path: Path, key: Any, algorithm: str) -> None:
    seen = Seen()
    gateway = EnvRouter(seen, {**config(f"sqlite:///{tmp_path / 'k.db'}", jwt=jwt_section()),
                               "routes": [{"when": {}, "backend": "app"}]})
    try:
        token = jwt.encode(claims(environment="production"), key, algorithm=algorithm)
        assert call(gateway, token) == (200, "ok")
    finally:
        gateway.store.close()
    assert seen.identity is not None
    assert seen.identity.to_dict() == {
        "key_id": "user_42", "environment": "production", "customer_id": None, "source": "jwt",
        "metadata": {"customer": "acme", "tier": "pro"}, "scopes": []}


def test_hs256_tokens(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}", jwt={
        "algorithms": ["HS256"], "secret": HS_SECRET, "metadata_claims": ["tier"]}))
    token = jwt.encode(claims(aud=None, iss="anyone"), HS_SECRET, algorithm="HS256")
    assert call(gateway, token) == (200, "sandbox user_42 sandbox")
    forged = jwt.encode(claims(), "another-secret-0123456789-abcdefghijklmnop",
                        algorithm="HS256")
    status, body = call(gateway, forged)
    assert (status, body["code"]) == (401, "invalid_token")  # type: ignore[index]


def unsigned(payload: dict[str, Any]) -> str:
    return jwt.encode(payload, None, algorithm="none")  # type: ignore[arg-type]


def confused() -> str:
    """HS256 signed with the RSA public key's PEM: the classic algorithm confusion."""
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = jwt.utils.base64url_encode(json.dumps(claims()).encode())
    import hashlib
    import hmac

    signature = hmac.new(pem(RSA_KEY).encode(), header + b"." + body, hashlib.sha256).digest()
    return b".".join([header, body, jwt.utils.base64url_encode(signature)]).decode()


def _in(seconds: int) -> int:
    """Unix time ``seconds`` from now, taken when the token is made (the test may run many
    minutes after collection: a time taken then made not-yet-valid tokens valid)."""
    return int(time.time()) + seconds


REFUSALS = [
    pytest.param(lambda: jwt.encode(claims(exp=_in(-60)), RSA_KEY, algorithm="RS256"),
                 "expired", id="expired"),
    pytest.param(lambda: jwt.encode(claims(exp=None), RSA_KEY, algorithm="RS256"),
                 "no exp claim", id="no-exp"),
    pytest.param(lambda: jwt.encode(claims(nbf=_in(600)), RSA_KEY, algorithm="RS256"),
                 "not valid yet", id="not-yet-valid"),
    pytest.param(lambda: jwt.encode(claims(iss="https://evil/"), RSA_KEY, algorithm="RS256"),
                 "issuer", id="wrong-issuer"),
    pytest.param(lambda: jwt.encode(claims(aud="https://other"), RSA_KEY, algorithm="RS256"),
                 "audience", id="wrong-audience"),
    pytest.param(lambda: jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256"),
                 "signature", id="unknown-signer"),
    pytest.param(lambda: jwt.encode(claims(), RSA_KEY, algorithm="RS384"),
                 "algorithm 'RS384'", id="algorithm-not-listed"),
    pytest.param(lambda: unsigned(claims()), "algorithm 'none'", id="alg-none"),
    pytest.param(confused, "algorithm 'HS256'", id="algorithm-confusion"),
    pytest.param(lambda: jwt.encode(claims(environment=None), RSA_KEY, algorithm="RS256"),
                 "no environment claim", id="no-environment"),
    pytest.param(lambda: jwt.encode(claims(environment="staging"), RSA_KEY,
                                    algorithm="RS256"), "no configured environment",
                 id="unknown-environment"),
    pytest.param(lambda: jwt.encode(claims(sub=None), RSA_KEY, algorithm="RS256"),
                 "no sub claim", id="no-subject"),
    pytest.param(lambda: "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "signature",
                 id="garbage-payload"),
    pytest.param(lambda: "e30.e30.", "algorithm", id="empty-header"),
]


@pytest.mark.parametrize(("make_token", "reason"), REFUSALS)
def test_refusals_are_invalid_token(gateway: EnvRouter, make_token: Any, reason: str) -> None:
    token = make_token()
    status, body = call(gateway, token)
    assert status == 401
    assert isinstance(body, dict)
    assert body["code"] == "invalid_token"
    assert reason in body["detail"]


def test_leeway_applies(gateway: EnvRouter) -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 2), RSA_KEY, algorithm="RS256")
    assert call(gateway, token)[0] == 200


def test_scopes_claim_restricts_the_token(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = make_gateway(config(
        f"sqlite:///{tmp_path / 'k.db'}", jwt=jwt_section(scopes_claim="scope"),
        scopes={"charges:read": ["GET /v1/charges/**"]}))

    def token(scope: str | None) -> str:
        return jwt.encode(claims(scope=scope), RSA_KEY, algorithm="RS256")

    assert call(gateway, token("openid charges:read"))[0] == 200
    for scoped, method in [("charges:read", "POST"), ("openid profile", "GET"), (None, "GET"),
                           ("", "GET")]:
        status, body = call(gateway, token(scoped), method=method)
        assert (status, body["code"]) == (403, "insufficient_scope"), scoped  # type: ignore[index]


@pytest.mark.parametrize(("section", "key"), [
    pytest.param({"algorithms": ["HS512"], "secret": HS_SECRET, "public_keys": []},
                 "jwt.secret", id="short-hmac-secret"),
    pytest.param({"public_keys": ["-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"]},
                 "jwt.public_keys[0]", id="bad-pem"),
    pytest.param({"algorithms": ["ES256"], "public_keys": [pem(RSA_KEY)]},
                 "jwt.public_keys[0]", id="key-fits-no-algorithm"),
])
def test_unusable_keys_stop_start_up(make_gateway: GatewayFactory, tmp_path: Path,
                                     section: dict[str, Any], key: str) -> None:
    settings = jwt_section(**section)
    if "secret" in section:
        settings.pop("public_keys")
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}", jwt=settings))


# -- a real JWKS server ----------------------------------------------------------------


def jwk(private_key: Any, kid: str, algorithm: str) -> dict[str, Any]:
    algorithm_object = jwt.algorithms.get_default_algorithms()[algorithm]
    data: dict[str, Any] = json.loads(algorithm_object.to_jwk(private_key.public_key()))
    return {**data, "kid": kid, "alg": algorithm, "use": "sig"}


class Jwks:
    def __init__(self, directory: Path) -> None:
        self.file = directory / "jwks.json"
        self.counter = directory / "fetches.txt"
        self.counter.write_text("")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def publish(self, *keys: dict[str, Any]) -> None:
        self.file.write_text(json.dumps({"keys": list(keys)}))

    @property
    def fetches(self) -> int:
        return len(self.counter.read_text().splitlines())


@pytest.fixture
def jwks(tmp_path: Path) -> Iterator[Jwks]:
    server = Jwks(tmp_path)
    server.publish(jwk(RSA_KEY, "k1", "RS256"))
    command = [sys.executable, "-m", "tests.policies.jwks_server", str(server.file),
               str(server.counter), str(server.port)]
    with running(command, port=server.port, cwd=Path(__file__).parents[2]):
        yield server


def test_jwks_rotation_refetches_at_most_once_per_interval(
    make_gateway: GatewayFactory, tmp_path: Path, jwks: Jwks,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("envroute.jwks.JWKS_REFETCH_SECONDS", 1.5)
    gateway = make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}", jwt={
        "algorithms": ["RS256", "ES256"], "jwks_url": jwks.url}))
    first = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    assert call(gateway, first)[0] == 200
    assert call(gateway, first)[0] == 200
    assert jwks.fetches == 1  # fetched once, then cached

    # the identity provider rotates: k2 (ES256) appears
    jwks.publish(jwk(RSA_KEY, "k1", "RS256"), jwk(EC_KEY, "k2", "ES256"))
    rotated = jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "k2"})
    assert call(gateway, rotated)[0] == 200
    assert jwks.fetches == 2  # an unknown kid fetched the set again

    # made-up kids do not flood the identity provider
    for number in range(5):
        made_up = jwt.encode(claims(), EC_KEY, algorithm="ES256",
                             headers={"kid": f"forged{number}"})
        status, body = call(gateway, made_up)
        assert (status, body["code"]) == (401, "invalid_token")  # type: ignore[index]
        assert "kid" in body["detail"]  # type: ignore[index]
    assert jwks.fetches == 2
    jwks.publish(jwk(RSA_KEY, "k1", "RS256"), jwk(EC_KEY, "k2", "ES256"),
                 jwk(OTHER_RSA_KEY, "k3", "RS256"))
    newest = jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "k3"})
    assert call(gateway, newest)[0] == 401  # within the interval: not fetched yet
    time.sleep(1.6)
    assert call(gateway, newest)[0] == 200  # the interval passed: fetched, accepted
    assert jwks.fetches == 3
    # a kid whose JWK says RS256 cannot be used with another algorithm
    mismatched = jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "k1"})
    assert call(gateway, mismatched)[0] == 401


def test_jwks_server_down_fails_closed_with_503(make_gateway: GatewayFactory,
                                                tmp_path: Path) -> None:
    gateway = make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}", jwt={
        "algorithms": ["RS256"], "jwks_url": f"http://127.0.0.1:{free_port()}/jwks"}))
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    for _ in range(2):  # the second answer comes without trying again
        status, body = call(gateway, token)
        assert (status, body["code"]) == (503, "store_unavailable")  # type: ignore[index]


def test_a_jwks_that_answers_no_json_fails_closed_with_503(
        make_gateway: GatewayFactory, tmp_path: Path, jwks: Jwks) -> None:
    """An identity provider answering an HTML error page with 200 is an outage of the key
    set (503, retried at most every few seconds), not a 502 blamed on a backend."""
    jwks.file.write_text("<html><body>Service Unavailable</body></html>")
    gateway = make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}", jwt={
        "algorithms": ["RS256"], "jwks_url": jwks.url}))
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    for _ in range(2):
        status, body = call(gateway, token)
        assert (status, body["code"]) == (503, "store_unavailable")  # type: ignore[index]
    assert jwks.fetches == 1  # the second answer came without asking again


def test_jwt_not_configured(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}"))
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256")
    status, body = call(gateway, token)
    assert (status, body["code"]) == (401, "invalid_token")  # type: ignore[index]


# -- 0.2: nothing a token carries can add or split a header line -------------------------

CONTROL_CHARACTERS = ["\r", "\n", "\r\nX-Injected: 1", "\x00", "\x01", "\t", "\x1b",
                      "\x7f", "\x85"]


@pytest.mark.parametrize("character", CONTROL_CHARACTERS,
                         ids=[repr(c)[1:-1] for c in CONTROL_CHARACTERS])
@pytest.mark.parametrize("where", ["sub", "org_id", "tier", "nested-list", "nested-key"])
def test_a_control_character_in_an_identity_claim_is_invalid_token(
        make_gateway: GatewayFactory, tmp_path: Path, where: str, character: str) -> None:
    gateway = make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}", jwt=jwt_section(
        customer_claim="org_id", metadata_claims={"tier": "tier", "groups": "groups",
                                                  "extra": "extra"})))
    bad = f"a{character}b"
    changes: dict[str, Any] = {
        "sub": {"sub": bad}, "org_id": {"org_id": bad}, "tier": {"tier": bad},
        "nested-list": {"groups": ["ok", [bad]]}, "nested-key": {"extra": {bad: 1}},
    }[where]
    token = jwt.encode(claims(**{"org_id": "acme", **changes}), RSA_KEY, algorithm="RS256")
    status, body = call(gateway, token)
    assert (status, body["code"]) == (401, "invalid_token")  # type: ignore[index]


@pytest.mark.parametrize(("claim", "value"), [
    pytest.param("sub", "用户", id="sub-beyond-latin-1"),
    pytest.param("org_id", "acmé\u2028", id="customer-beyond-latin-1"),
    pytest.param("sub", " padded", id="sub-leading-space"),
    pytest.param("org_id", "acme ", id="customer-trailing-space"),
    pytest.param("org_id", ["acme"], id="customer-not-a-string"),
])
def test_an_id_that_cannot_be_a_header_value_is_refused_at_authentication(
        make_gateway: GatewayFactory, tmp_path: Path, claim: str, value: Any) -> None:
    gateway = make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}",
                                  jwt=jwt_section(customer_claim="org_id")))
    token = jwt.encode(claims(**{claim: value}), RSA_KEY, algorithm="RS256")
    status, body = call(gateway, token)
    assert (status, body["code"]) == (401, "invalid_token")  # type: ignore[index]


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({"org_id": "acme"}, "acme", id="string"),
    pytest.param({"org_id": 1234}, "1234", id="number"),
    pytest.param({}, None, id="absent"),
    pytest.param({"sub": "jane.doe@example.com", "org_id": "café"}, "café",
                 id="latin-1-and-dots"),
])
def test_customer_claim_becomes_the_customer_id(tmp_path: Path, changes: dict[str, Any],
                                                expected: str | None) -> None:
    seen = Seen()
    gateway = EnvRouter(seen, {**config(f"sqlite:///{tmp_path / 'k.db'}",
                                        jwt=jwt_section(customer_claim="org_id")),
                               "routes": [{"when": {}, "backend": "app"}]})
    try:
        token = jwt.encode(claims(**changes), RSA_KEY, algorithm="RS256")
        assert call(gateway, token) == (200, "ok")
    finally:
        gateway.store.close()
    assert seen.identity is not None and seen.identity.customer_id == expected


def b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode()


def test_crafted_headers_are_invalid_token_never_an_exception(gateway: EnvRouter) -> None:
    critical = jwt.encode(claims(), RSA_KEY, algorithm="RS256",
                          headers={"crit": ["x-policy"], "x-policy": "mfa"})
    status, body = call(gateway, critical)  # PyJWT < 2.12 accepted it
    assert (status, body["code"]) == (401, "invalid_token")  # type: ignore[index]
    depth = 100_000
    nested = b'{"alg":"RS256","x":' + b"[" * depth + b"]" * depth + b"}"
    token = f"{b64(nested)}.{b64(json.dumps(claims()).encode())}.{b64(b'sig')}"
    status, body = call(gateway, token)  # PyJWT < 2.14 raised RecursionError: a 500
    assert (status, body["code"]) == (401, "invalid_token")  # type: ignore[index]


def test_the_pyjwt_floor_is_installed() -> None:
    from importlib.metadata import requires, version
    assert tuple(int(p) for p in version("pyjwt").split(".")[:2]) >= (2, 15)
    assert any(r.startswith("pyjwt[crypto]>=2.15") for r in requires("envroute") or [])


def test_a_jwks_query_string_is_never_logged_or_answered(
        make_gateway: GatewayFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks?access_token=tok-SECRET-123"
    gateway = make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}", jwt={
        "algorithms": ["RS256"], "jwks_url": url}))
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    with caplog.at_level("DEBUG"):
        status, body = call(gateway, token)
    assert (status, body["code"]) == (503, "store_unavailable")  # type: ignore[index]
    assert "tok-SECRET" not in json.dumps(body)
    assert "tok-SECRET" not in caplog.text
    assert all("tok-SECRET" not in str(r.args) for r in caplog.records)
