"""JWT bearer tokens, verified with PyJWT into an :class:`~envroute.identity.Identity`.

Configured by ``[jwt]`` (contract §4), compiled once at start-up by
:func:`build_token_verifier`. What a token must satisfy:

- its header's ``alg`` is one of ``algorithms`` (``none`` and mixing HS* with public-key
  algorithms are refused at start-up, so algorithm confusion is impossible), and the key
  that checks it is of that algorithm's family;
- a valid signature under ``secret`` (HS*), one of ``public_keys`` (PEM public keys or
  certificates, tried in turn) or the ``jwks_url`` key its ``kid`` names;
- ``exp`` present and in the future, ``nbf``/``iat`` not in the future (``leeway`` applies);
- ``iss`` / ``aud`` equal to ``issuer`` / ``audience`` when those are set (unchecked
  otherwise);
- ``environment_claim`` present, naming a configured environment, and ``key_id_claim``
  present; both become the identity's ``environment`` and ``key_id``;
- ``customer_claim`` (optional) becomes the identity's ``customer_id`` when present;
- ``metadata_claims`` (metadata name -> claim) copied into the metadata when present;
- the key id, customer id and every string in a metadata value hold no control character
  (C0, DEL, C1), and the two ids no edge whitespace and nothing beyond Latin-1: they are
  sent upstream as header values, and a value that could add or split a header line, or
  that the proxy cannot encode, is refused here as ``invalid_token`` rather than becoming
  a ``502`` blamed on a healthy backend;
- with ``scopes_claim`` set, the claim (space-separated, or a list) becomes the identity's
  scopes, and a token without any scope is refused with 403 ``insufficient_scope``: once
  you configure scopes for tokens, a token never passes as unrestricted by omission.

Every failure is 401 ``invalid_token`` whose detail names the reason, never the token.

A JWKS is fetched, cached and fetched again on key rotation by :mod:`envroute.jwks`; when
it cannot be had the gateway fails closed with 503 ``store_unavailable`` (see there).
:meth:`JwtVerifier.reach` is what ``envroute check`` asks of it.

PyJWT 2.15 or later is required: older versions accept unknown ``crit`` header extensions
(CVE-2026-32597, fixed in 2.12) and let a deeply nested header or payload raise
``RecursionError`` out of the verifier (fixed in 2.14 and 2.15).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jwt
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuedAtError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidTokenError,
    MissingRequiredClaimError,
    PyJWTError,
)

from .errors import ConfigError
from .identity import Identity
from .jwks import JwksKeys
from .problems import Problem
from .settings import JwtSettings, Settings

#: The minimum HMAC secret per algorithm (RFC 7518 §3.2: at least the hash's size).
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
#: Which algorithms each kind of public key can check.
_FAMILIES = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("EdDSA",)}

_REASONS: tuple[tuple[type[PyJWTError], str], ...] = (
    (ExpiredSignatureError, "the token has expired"),
    (ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (InvalidIssuedAtError, "the token's iat claim is invalid"),
    (InvalidAudienceError, "the token's audience (aud) is not this API"),
    (InvalidIssuerError, "the token's issuer (iss) is not the configured one"),
    (InvalidAlgorithmError, "the token's algorithm is not accepted"),
    (InvalidSignatureError, "the token's signature does not verify"),
)


def _reason(exc: PyJWTError) -> str:
    if isinstance(exc, MissingRequiredClaimError):
        return f"the token has no {exc.claim} claim"
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "the token is malformed"


def _invalid(reason: str) -> Problem:
    return Problem("invalid_token", reason)


#: C0 controls, DEL and C1 controls: none may reach a header line or a log line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: What a header value may hold as envroute sends it: Latin-1 without controls.
_HEADER_SAFE = re.compile(r"[\x20-\x7e\xa0-\xff]*")


def _header_value(value: str, claim: str) -> str:
    """``value`` if it can be sent upstream as one header value unchanged, else refused."""
    if not _HEADER_SAFE.fullmatch(value) or value != value.strip(" "):
        raise _invalid(f"the token's {claim} claim holds a character that cannot be sent "
                       "in a header")
    return value


def _check_metadata(value: object, claim: str, depth: int = 0) -> None:
    """Refuse a metadata claim holding a control character anywhere (keys too)."""
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise _invalid(f"the token's {claim} claim holds a control character")
    elif isinstance(value, list):
        for item in value:
            _check_metadata(item, claim, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_metadata(key, claim, depth + 1)
            _check_metadata(item, claim, depth + 1)


# -- where keys come from ---------------------------------------------------------------


def _load_public_key(pem: str, index: int, source: str) -> tuple[Any, tuple[str, ...]]:
    """A PEM public key or certificate -> (key object, the algorithm prefixes it checks)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem.strip().encode()
    try:
        if b"CERTIFICATE" in data.split(b"\n", 1)[0]:
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"not a PEM public key or certificate ({exc})",
                          key=f"jwt.public_keys[{index}]", source=source) from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, _FAMILIES["RSA"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key, _FAMILIES["EC"]
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key, _FAMILIES["OKP"]
    raise ConfigError("unsupported public key type", key=f"jwt.public_keys[{index}]",
                      source=source)


# -- the verifier -------------------------------------------------------------------------


class JwtVerifier:
    """Verifies bearer JWTs as ``[jwt]`` says; built once, thread-safe."""

    def __init__(self, settings: JwtSettings, environments: frozenset[str], *,
                 source: str = "<config>", refetch_interval: float | None = None) -> None:
        self.settings = settings
        self.environments = environments
        self.algorithms = list(settings.algorithms)
        self._jwt = jwt.PyJWT({"require": ["exp"], "verify_aud": bool(settings.audience)})
        self._jwks: JwksKeys | None = None
        self._static: list[tuple[Any, list[str]]] = []
        if settings.jwks_url:
            self._jwks = JwksKeys(settings.jwks_url, refetch_interval=refetch_interval)
        elif settings.public_keys:
            for index, pem in enumerate(settings.public_keys):
                key, families = _load_public_key(pem, index, source)
                usable = [a for a in self.algorithms if a.startswith(families)]
                if not usable:
                    raise ConfigError(f"this key checks none of the algorithms "
                                      f"{', '.join(self.algorithms)}",
                                      key=f"jwt.public_keys[{index}]", source=source)
                self._static.append((key, usable))
        else:
            needed = max(_HMAC_MIN_BYTES.get(a, 32) for a in self.algorithms)
            if len(settings.secret.encode()) < needed:
                raise ConfigError(f"must be at least {needed} bytes for "
                                  f"{', '.join(self.algorithms)}", key="jwt.secret",
                                  source=source)
            self._static.append((settings.secret, self.algorithms))

    def reach(self) -> str | None:
        """For ``envroute check``: ``jwks_url`` fetched now and described in one line
        (``"2 signing keys (ES256, RS256)"``); None when the keys are in the config.
        Raises :class:`StoreUnavailable` with the cause when no token could be checked."""
        if self._jwks is None:
            return None
        return self._jwks.reach(self.algorithms)

    @property
    def jwks_url(self) -> str:
        """``jwks_url`` as it may be printed: no query string, no password ("" if none)."""
        return self._jwks.url if self._jwks is not None else ""

    def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise _invalid("the token is malformed") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise _invalid(f"the token's algorithm {str(algorithm)[:16]!r} is not accepted")
        claims = self._decode(token, algorithm)
        return self._identity(claims)

    def _decode(self, token: str, algorithm: str) -> dict[str, Any]:
        settings = self.settings
        options: dict[str, Any] = {
            "algorithms": [algorithm], "leeway": settings.leeway,
            "issuer": settings.issuer or None, "audience": settings.audience or None,
        }
        if self._jwks is not None:
            jwk = self._jwks.key_for(jwt.get_unverified_header(token))
            # PyJWT checks the token's alg against the algorithm the JWK is bound to (its
            # ``alg`` member, else its key type's default), so a key never checks a token
            # of another algorithm.
            if algorithm != jwk.algorithm_name:
                raise _invalid("the token's algorithm does not match its key")
            candidates: list[Any] = [jwk]
        else:
            candidates = [key for key, usable in self._static if algorithm in usable]
        last: PyJWTError = InvalidSignatureError()
        for key in candidates:
            try:
                claims: dict[str, Any] = self._jwt.decode(token, key, **options)
                return claims
            except InvalidSignatureError as exc:
                last = exc  # another configured key may have signed it
            except InvalidTokenError as exc:
                raise _invalid(_reason(exc)) from None
            except PyJWTError:
                raise _invalid("the token cannot be checked with the configured keys") from None
        raise _invalid(_reason(last))

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        settings = self.settings
        key_id = claims.get(settings.key_id_claim)
        if not isinstance(key_id, str | int) or isinstance(key_id, bool) or key_id == "":
            raise _invalid(f"the token has no {settings.key_id_claim} claim")
        environment = claims.get(settings.environment_claim)
        if not isinstance(environment, str) or not environment:
            raise _invalid(f"the token has no {settings.environment_claim} claim")
        if environment not in self.environments:
            raise _invalid(f"the token's {settings.environment_claim} claim names no "
                           "configured environment")
        key_id = _header_value(str(key_id), settings.key_id_claim)
        customer_id: str | None = None
        if settings.customer_claim:
            value = claims.get(settings.customer_claim)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                customer_id = _header_value(str(value), settings.customer_claim)
            elif value is not None:
                raise _invalid(f"the token's {settings.customer_claim} claim is not a string")
        metadata = {name: claims[claim] for name, claim in settings.metadata_claims.items()
                    if claims.get(claim) is not None}
        for name, value in metadata.items():
            _check_metadata(value, settings.metadata_claims[name])
        scopes: frozenset[str] = frozenset()
        if settings.scopes_claim:
            scopes = _scopes(claims.get(settings.scopes_claim))
            if not scopes:
                raise Problem("insufficient_scope", f"the token grants no scopes "
                              f"(claim {settings.scopes_claim!r})")
        return Identity(key_id=key_id, environment=environment, metadata=metadata,
                        source="jwt", scopes=scopes, display=f"jwt:{key_id}"[:80],
                        customer_id=customer_id)


def _scopes(value: object) -> frozenset[str]:
    """A scope claim: ``"a b c"`` (OAuth 2.0 ``scope``) or ``["a", "b"]`` (``scp``)."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(s for s in value if isinstance(s, str) and s)
    return frozenset()


def build_token_verifier(jwt_settings: JwtSettings, settings: Settings) -> JwtVerifier:
    """The verifier ``[jwt]`` describes; a :class:`ConfigError` for unusable keys."""
    return JwtVerifier(jwt_settings, frozenset(settings.environments), source=settings.source)
