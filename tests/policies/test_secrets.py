"""Secret rotation (§3): previous secrets verify, get re-hashed in a batch, fingerprints."""

from __future__ import annotations

from dataclasses import replace

import pytest

from envroute import keys
from envroute.auth import ApiKeyVerifier, Authenticator
from envroute.config import parse_settings
from envroute.credentials import Credential
from envroute.problems import Problem
from envroute.secrets import UnknownStoreSecret, verify_store_secrets
from envroute.settings import Settings

from .memstore import MemoryStore, OldStore

OLD, OLDER, NEW = "old-secret-" + "o" * 32, "older-secret-" + "p" * 32, "new-secret-" + "n" * 32


def settings(secret: str = NEW, previous: tuple[str, ...] = ()) -> Settings:
    return replace(parse_settings({"secret": secret}), previous_secrets=previous)


def fingerprint(secret: str) -> str:
    return keys.secret_fingerprint(secret.encode())


def test_a_key_under_a_previous_secret_verifies_and_is_rehashed_in_a_batch() -> None:
    store = MemoryStore()
    old_keys = [store.add_key(secret=OLD) for _ in range(3)]
    current = store.add_key(secret=NEW)
    auth = Authenticator(ApiKeyVerifier(store, settings(previous=(OLDER, OLD))))
    for key in [*old_keys, current]:
        assert auth.authenticate(Credential(key, "bearer")).environment == "sandbox"
    assert store.rehashed == []  # never a write in the request
    assert auth.flusher.started  # the timer will do it
    auth.flush()
    assert len(store.rehashed) == 1 and len(store.rehashed[0]) == 3  # one batch
    assert {fp for _, fp in store.rehashed[0].values()} == {fingerprint(NEW)}
    assert store.secret_fingerprints() == {fingerprint(NEW): 4}
    fresh = ApiKeyVerifier(store, settings())  # the previous secret can go now
    for key in old_keys:
        assert fresh.verify(key).environment == "sandbox"
    auth.close()


def test_a_failed_rehash_is_tried_again() -> None:
    store = MemoryStore()
    key = store.add_key(secret=OLD)
    auth = Authenticator(ApiKeyVerifier(store, settings(previous=(OLD,))))
    auth.api_keys.verify(key)
    store.down = True
    auth.flush()
    assert auth.api_keys.rehasher.pending == 1
    store.down = False
    auth.flush()
    assert auth.api_keys.rehasher.pending == 0
    assert store.secret_fingerprints() == {fingerprint(NEW): 1}
    auth.close()


def test_a_made_up_key_costs_one_query_per_secret_once() -> None:
    store = MemoryStore()
    verifier = ApiKeyVerifier(store, settings(previous=(OLD, OLDER)))
    bogus = keys.generate_secret("sk_test_")
    for _ in range(10):
        with pytest.raises(Problem, match="does not exist"):
            verifier.verify(bogus)
    assert store.lookups == 3


def test_a_store_without_rehash_keeps_verifying_under_the_previous_secret() -> None:
    store = OldStore()
    key = store.add_key(secret=OLD)
    auth = Authenticator(ApiKeyVerifier(store, settings(previous=(OLD,))))
    auth.api_keys.verify(key)
    auth.flush()
    assert auth.api_keys.verify(key).environment == "sandbox"
    auth.close()


@pytest.mark.parametrize(("made_under", "previous", "needing"), [
    pytest.param([NEW, NEW], (), 0, id="all-current"),
    pytest.param([NEW, OLD, OLD], (OLD,), 2, id="two-under-previous"),
    pytest.param([OLD, OLDER], (OLD, OLDER), 2, id="two-previous-secrets"),
    pytest.param([], (), 0, id="empty-store"),
    pytest.param([NEW], (NEW,), 0, id="previous-repeats-current"),
])
def test_verify_store_secrets_counts_keys_under_previous_secrets(
        made_under: list[str], previous: tuple[str, ...], needing: int) -> None:
    store = MemoryStore()
    for secret in made_under:
        store.add_key(secret=secret)
    assert verify_store_secrets(store, settings(previous=previous)) == needing


def test_keys_from_before_fingerprints_are_not_judged() -> None:
    store = MemoryStore()
    store.add_key(secret=OLD)
    store.hashes = {h: (key_id, "") for h, (key_id, _) in store.hashes.items()}
    assert verify_store_secrets(store, settings()) == 0


@pytest.mark.parametrize(("made_under", "previous", "count"), [
    pytest.param([OLD], (), "1 key secret ", id="secret-changed"),
    pytest.param([NEW, OLD, OLD, OLDER], (OLDER,), "2 key secrets ", id="one-previous-missing"),
])
def test_an_unknown_store_secret_is_one_line(made_under: list[str], previous: tuple[str, ...],
                                             count: str) -> None:
    store = MemoryStore()
    for secret in made_under:
        store.add_key(secret=secret)
    with pytest.raises(UnknownStoreSecret) as caught:
        verify_store_secrets(store, settings(previous=previous))
    message = str(caught.value)
    assert "\n" not in message and count in message
    assert "previous_secrets" in message and ": secret: " in message
    for secret in (OLD, OLDER, NEW):
        assert secret not in message


def test_a_store_without_fingerprints_answers_zero() -> None:
    store = OldStore()
    store.add_key(secret=OLD)
    assert verify_store_secrets(store, settings()) == 0
