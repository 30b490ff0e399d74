"""Key verification: the caches, effective metadata, disabled keys and customers, changes.

An in-memory store that counts its queries (:mod:`tests.policies.memstore`) makes "a
repeat costs no store query" and "a flood cannot evict a verified key" exact; the same
behaviour through real stores is in ``test_usage.py`` and the store suites.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from envroute import auth, keys
from envroute.auth import ApiKeyVerifier, Authenticator
from envroute.config import parse_settings
from envroute.credentials import Credential
from envroute.errors import StoreUnavailable
from envroute.identity import Identity
from envroute.problems import Problem
from envroute.settings import Settings
from envroute.stores.base import Change, utcnow
from tests.support.apps import SECRET

from .memstore import MemoryStore


def settings(**extra: Any) -> Settings:
    return parse_settings({"secret": SECRET, **extra})


def refusal(verify: Callable[[], object]) -> str:
    with pytest.raises(Problem) as caught:
        verify()
    return caught.value.code


def made_up(prefix: str = "sk_test_") -> str:
    """A key nobody issued whose checksum is right: anyone can make these."""
    return keys.generate_secret(prefix)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def verifier(store: MemoryStore) -> ApiKeyVerifier:
    return ApiKeyVerifier(store, settings())


# -- the caches ---------------------------------------------------------------------------


def test_a_verified_key_is_one_store_query_per_ttl(store: MemoryStore,
                                                    verifier: ApiKeyVerifier) -> None:
    key = store.add_key()
    for _ in range(100):
        assert verifier.verify(key).environment == "sandbox"
    assert store.lookups == 1


def test_a_made_up_key_repeated_costs_one_store_query(store: MemoryStore,
                                                      verifier: ApiKeyVerifier) -> None:
    key = made_up()
    for _ in range(50):
        assert refusal(lambda: verifier.verify(key)) == "invalid_key"
    assert store.lookups == 1
    assert len(verifier.verified) == 0  # refusals live apart


@pytest.mark.parametrize("key", [
    pytest.param("sk_test_short", id="malformed"),
    pytest.param(made_up()[:-1] + "!", id="bad-checksum"),
    pytest.param(made_up("xk_other_"), id="unknown-prefix"),
])
def test_keys_refused_before_the_store(key: str, store: MemoryStore,
                                       verifier: ApiKeyVerifier) -> None:
    assert refusal(lambda: verifier.verify(key)) == "invalid_key"
    assert store.lookups == 0


def test_a_flood_of_made_up_keys_cannot_evict_a_verified_key(
        store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "REFUSALS_MAX_ENTRIES", 20)
    verifier = ApiKeyVerifier(store, settings())
    key = store.add_key()
    verifier.verify(key)
    flood = [made_up() for _ in range(200)]
    for bogus in flood:
        assert refusal(lambda b=bogus: verifier.verify(b)) == "invalid_key"
    assert len(verifier.refused) == 20  # bounded
    before = store.lookups
    verifier.verify(key)
    assert store.lookups == before  # still cached: no store query
    assert refusal(lambda: verifier.verify(flood[-1])) == "invalid_key"
    assert store.lookups == before  # the most recent refusals are remembered
    assert refusal(lambda: verifier.verify(flood[0])) == "invalid_key"
    assert store.lookups == before + 1  # the oldest was evicted, not the verified key


def test_the_verified_cache_evicts_the_least_recently_used(
        store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "CACHE_MAX_ENTRIES", 2)
    verifier = ApiKeyVerifier(store, settings())
    first, second, third = store.add_key(), store.add_key(), store.add_key()
    verifier.verify(first)
    verifier.verify(second)
    verifier.verify(first)  # first is now the most recent
    verifier.verify(third)  # evicts second
    before = store.lookups
    verifier.verify(first)
    assert store.lookups == before
    verifier.verify(second)
    assert store.lookups == before + 1


def test_a_store_outage_is_never_cached(store: MemoryStore, verifier: ApiKeyVerifier) -> None:
    key = store.add_key()
    store.down = True
    with pytest.raises(StoreUnavailable):
        verifier.verify(key)
    store.down = False
    assert verifier.verify(key).environment == "sandbox"


# -- effective metadata, disabled keys and customers ----------------------------------------


@pytest.mark.parametrize("join", [pytest.param(True, id="joined"),
                                  pytest.param(False, id="store-without-join")])
def test_effective_metadata_is_the_customers_then_the_keys(join: bool) -> None:
    store = MemoryStore(join_customer=join)
    store.add_customer("acme", metadata={"tier": "gold", "backend": "shared", "region": "eu"})
    key = store.add_key(customer="acme", metadata={"backend": "dedicated"})
    identity = ApiKeyVerifier(store, settings()).verify(key)
    assert identity.customer_id == "acme"
    assert dict(identity.metadata) == {"tier": "gold", "backend": "dedicated", "region": "eu"}


def test_a_key_without_customer_has_its_own_metadata(store: MemoryStore,
                                                     verifier: ApiKeyVerifier) -> None:
    identity = verifier.verify(store.add_key(metadata={"tier": "free"}))
    assert identity.customer_id is None and dict(identity.metadata) == {"tier": "free"}


@pytest.mark.parametrize(("key_fields", "customer_fields", "code"), [
    pytest.param({"disabled_at": utcnow()}, {}, "disabled_key", id="disabled-key"),
    pytest.param({}, {"disabled_at": utcnow()}, "disabled_key", id="disabled-customer"),
    pytest.param({"revoked_at": utcnow(), "disabled_at": utcnow()}, {}, "revoked_key",
                 id="revoked-stays-revoked"),
    pytest.param({"revoked_at": utcnow()}, {"disabled_at": utcnow()}, "revoked_key",
                 id="revoked-under-disabled-customer"),
    pytest.param({"expires_at": utcnow()}, {}, "expired_key", id="expired"),
    pytest.param({"disabled_at": utcnow(), "expires_at": utcnow()}, {}, "disabled_key",
                 id="disabled-before-expired"),
])
def test_refusals_of_known_keys(store: MemoryStore, verifier: ApiKeyVerifier,
                                key_fields: dict[str, Any], customer_fields: dict[str, Any],
                                code: str) -> None:
    store.add_customer("acme", **customer_fields)
    key = store.add_key(customer="acme", **key_fields)
    assert refusal(lambda: verifier.verify(key)) == code
    assert refusal(lambda: verifier.verify(key)) == code
    assert store.lookups == 1  # a known key's refusal is cached like a verdict


# -- changes --------------------------------------------------------------------------------


def test_changes_drop_exactly_what_they_concern(store: MemoryStore) -> None:
    authenticator = Authenticator(ApiKeyVerifier(store, settings()))
    store.add_customer("acme")
    store.add_customer("globex")
    acme_1, acme_2 = store.add_key(customer="acme"), store.add_key(customer="acme")
    globex, loner = store.add_key(customer="globex"), store.add_key()
    every = {"acme_1": acme_1, "acme_2": acme_2, "globex": globex, "loner": loner}
    ids = {name: authenticator.api_keys.verify(key).key_id for name, key in every.items()}

    def reloaded(change: Change) -> set[str]:
        for key in every.values():
            authenticator.api_keys.verify(key)
        authenticator.on_change(change)
        before = store.lookups
        seen = set()
        for name, key in every.items():
            authenticator.api_keys.verify(key)
            if store.lookups > before:
                seen.add(name)
                before = store.lookups
        return seen

    assert reloaded(Change("key", ids["acme_2"])) == {"acme_2"}
    assert reloaded(Change("customer", "acme")) == {"acme_1", "acme_2"}
    assert reloaded(Change("all")) == set(every)
    assert reloaded(Change("backend", "shared")) == set()


@pytest.mark.parametrize(("change", "key_fields", "customer_fields", "code"), [
    pytest.param("key", {"disabled_at": utcnow()}, {}, "disabled_key", id="key-disabled"),
    pytest.param("key", {"revoked_at": utcnow()}, {}, "revoked_key", id="key-revoked"),
    pytest.param("customer", {}, {"disabled_at": utcnow()}, "disabled_key",
                 id="customer-disabled"),
    pytest.param("all", {}, {"disabled_at": utcnow()}, "disabled_key", id="all"),
])
def test_a_change_is_honoured_at_once(store: MemoryStore, change: str,
                                      key_fields: dict[str, Any],
                                      customer_fields: dict[str, Any], code: str) -> None:
    authenticator = Authenticator(ApiKeyVerifier(store, settings()))
    store.add_customer("acme")
    key = store.add_key(customer="acme")
    key_id = authenticator.api_keys.verify(key).key_id
    store.change_key(key_id, **key_fields)
    store.change_customer("acme", **customer_fields)
    authenticator.on_change(Change(change, {"key": key_id, "customer": "acme"}.get(change)))  # type: ignore[arg-type]
    assert refusal(lambda: authenticator.api_keys.verify(key)) == code


def test_enabling_restores_the_key_with_new_metadata(store: MemoryStore) -> None:
    authenticator = Authenticator(ApiKeyVerifier(store, settings()))
    store.add_customer("acme", metadata={"backend": "shared"}, disabled_at=utcnow())
    key = store.add_key(customer="acme")
    assert refusal(lambda: authenticator.api_keys.verify(key)) == "disabled_key"
    store.change_customer("acme", disabled_at=None, metadata={"backend": "dedicated"})
    authenticator.on_change(Change("customer", "acme"))
    assert authenticator.api_keys.verify(key).metadata["backend"] == "dedicated"


def test_a_change_during_a_load_is_not_cached_stale(store: MemoryStore,
                                                    verifier: ApiKeyVerifier) -> None:
    key = store.add_key()
    real = store.lookup

    def lookup_then_change(key_hash: bytes) -> Any:
        found = real(key_hash)  # the store answers, then a change arrives before caching
        verifier.on_change(Change("all"))
        return found

    store.lookup = lookup_then_change  # type: ignore[method-assign]
    verifier.verify(key)
    store.lookup = real  # type: ignore[method-assign]
    verifier.verify(key)
    assert store.lookups == 2


# -- JWT customers --------------------------------------------------------------------------


class StubTokens:
    """What the token verifier hands over: claims already checked, customer_id set."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    def verify(self, token: str) -> Identity:
        return self.identity


JWT = Credential("aaa.bbb.ccc", "bearer")
CLAIMS = Identity(key_id="user@example.com", environment="production",
                  metadata={"tier": "token-tier"}, source="jwt", customer_id="acme")


@pytest.mark.parametrize(("customer", "expected"), [
    pytest.param({"metadata": {"tier": "gold", "backend": "dedicated"}},
                 {"tier": "token-tier", "backend": "dedicated"}, id="claims-win"),
    pytest.param(None, {"tier": "token-tier"}, id="unknown-customer-adds-nothing"),
    pytest.param({}, {"tier": "token-tier"}, id="customer-without-metadata"),
])
def test_a_tokens_customer_lies_beneath_its_claims(store: MemoryStore,
                                                  customer: dict[str, Any] | None,
                                                  expected: dict[str, Any]) -> None:
    if customer is not None:
        store.add_customer("acme", **customer)
    authenticator = Authenticator(ApiKeyVerifier(store, settings()), StubTokens(CLAIMS))
    identity = authenticator.authenticate(JWT)
    assert dict(identity.metadata) == expected
    assert identity.customer_id == "acme" and identity.source == "jwt"


def test_a_tokens_customer_is_cached_disabled_and_changed(store: MemoryStore) -> None:
    store.add_customer("acme", metadata={"backend": "shared"})
    authenticator = Authenticator(ApiKeyVerifier(store, settings()), StubTokens(CLAIMS))
    for _ in range(10):
        authenticator.authenticate(JWT)
    assert store.customer_lookups == 1
    store.change_customer("acme", disabled_at=utcnow())
    authenticator.on_change(Change("customer", "acme"))
    assert refusal(lambda: authenticator.authenticate(JWT)) == "disabled_key"
    store.change_customer("acme", disabled_at=None, metadata={"backend": "dedicated"})
    authenticator.on_change(Change("all"))
    assert authenticator.authenticate(JWT).metadata["backend"] == "dedicated"


def test_a_token_without_customer_asks_no_store(store: MemoryStore) -> None:
    tokens = StubTokens(replace(CLAIMS, customer_id=None))
    authenticator = Authenticator(ApiKeyVerifier(store, settings()), tokens)
    assert authenticator.authenticate(JWT).customer_id is None
    assert store.customer_lookups == 0
