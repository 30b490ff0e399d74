"""Key format: what a caller, a secret scanner and the store rely on."""

from __future__ import annotations

import re

import pytest

from envroute import keys

KEY_SHAPE = re.compile(r"^sk_test_[0-9A-Za-z]{38}$")


def test_generated_key_has_prefix_random_and_checksum() -> None:
    key = keys.generate_secret("sk_test_")
    assert KEY_SHAPE.match(key)
    assert keys.checksum(key[:-6]) == key[-6:]
    parsed = keys.parse(key)
    assert parsed is not None and parsed.prefix == "sk_test_" and parsed.last4 == key[-4:]


def test_generated_keys_are_unique() -> None:
    assert len({keys.generate_secret("sk_live_") for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"), id="checksum-typo"),
        pytest.param(lambda k: k[:12] + ("x" if k[12] != "x" else "y") + k[13:], id="body-typo"),
        pytest.param(lambda k: k[:-7] + k[-6:], id="dropped-character"),
        pytest.param(lambda k: k.replace("sk_test_", "sk_live_"), id="swapped-prefix"),
        pytest.param(lambda k: k[:20], id="truncated"),
        pytest.param(lambda k: k + "!", id="punctuation"),
        pytest.param(lambda k: k.upper(), id="upper-cased"),
        pytest.param(lambda k: "", id="empty"),
    ],
)
def test_mistyped_keys_fail_the_checksum(mutate: object) -> None:
    key = keys.generate_secret("sk_test_")
    assert keys.parse(mutate(key)) is None  # type: ignore[operator]


def test_hash_is_keyed_and_deterministic() -> None:
    key = keys.generate_secret("sk_test_")
    assert keys.hash_key(b"a" * 32, key) == keys.hash_key(b"a" * 32, key)
    assert keys.hash_key(b"a" * 32, key) != keys.hash_key(b"b" * 32, key)
    assert key.encode() not in keys.hash_key(b"a" * 32, key)


@pytest.mark.parametrize("key", [
    pytest.param(keys.generate_secret("sk_test_"), id="key"),
    pytest.param("", id="empty"),
    pytest.param("é" * 40, id="non-ascii"),
])
def test_the_hot_path_hasher_is_hash_key(key: str) -> None:
    assert keys.KeyHasher(b"a" * 32)(key) == keys.hash_key(b"a" * 32, key)


@pytest.mark.parametrize(("one", "other", "same"), [
    pytest.param(b"a" * 32, b"a" * 32, True, id="stable"),
    pytest.param(b"a" * 32, b"b" * 32, False, id="per-secret"),
    pytest.param(b"a" * 32, b"a" * 31, False, id="one-byte-shorter"),
])
def test_secret_fingerprints_name_a_secret_without_revealing_it(one: bytes, other: bytes,
                                                                 same: bool) -> None:
    fingerprint = keys.secret_fingerprint(one)
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    assert (fingerprint == keys.secret_fingerprint(other)) is same
    assert fingerprint not in one.hex() and one.decode() not in fingerprint
