"""Records the contract tests store (fixed times, so equality is exact)."""

from __future__ import annotations

from datetime import UTC, datetime

from envroute.stores import BackendRecord, CustomerRecord, KeyRecord

NOW = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
HASH = b"\x01" * 32
OTHER = b"\x02" * 32
THIRD = b"\x03" * 32


def key(key_id: str = "key_one", **changes: object) -> KeyRecord:
    values: dict[str, object] = {
        "id": key_id, "environment": "sandbox", "prefix": "sk_test_", "last4": "abcd",
        "created_at": NOW, "metadata": {"customer": "acme", "tier": "free", "n": 3},
        "name": "ci", "scopes": (),
    }
    values.update(changes)
    return KeyRecord(**values)  # type: ignore[arg-type]


def customer(customer_id: str = "acme", **changes: object) -> CustomerRecord:
    values: dict[str, object] = {"id": customer_id, "created_at": NOW, "name": "Acme",
                                 "metadata": {"tier": "pro", "backend": "shared"}}
    values.update(changes)
    return CustomerRecord(**values)  # type: ignore[arg-type]


def backend(name: str = "dedicated-1", **changes: object) -> BackendRecord:
    values: dict[str, object] = {"name": name, "url": "http://10.0.0.1:8080",
                                 "timeout": 12.5, "connect_timeout": 2.0,
                                 "strip_prefix": "/api", "pool_size": 4,
                                 "created_at": NOW, "updated_at": NOW}
    values.update(changes)
    return BackendRecord(**values)  # type: ignore[arg-type]
