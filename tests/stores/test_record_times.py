"""A record's times read alike: whole seconds for every moment a manager writes (§3).

0.2's first cut made ``created_at`` whole seconds and ``revoked_at``/``disabled_at``
microseconds, so one record's ``--json`` mixed ``…:05Z`` with ``…:05.123456Z``. Every
store keeps what it is given (``test_customers`` stores microseconds and gets them back);
the managers now give whole seconds, whatever the store.
"""

from __future__ import annotations

from datetime import datetime

from envroute import KeyManager
from envroute.config import parse_settings
from envroute.customers import CustomerManager
from envroute.stores import KeyStore
from tests.support.apps import SECRET


def moments(record: object) -> dict[str, datetime]:
    return {name: value for name, value in vars(record).items()
            if isinstance(value, datetime)}


def test_every_time_a_manager_records_is_a_whole_second(store: KeyStore) -> None:
    settings = parse_settings({"secret": SECRET})
    customers, keys = CustomerManager(store, settings), KeyManager(store, settings)
    customers.create("acme")
    customer = customers.disable("acme")
    issued = keys.create("sandbox", customer_id="acme", expires_in=3600)
    keys.disable(issued.record.id)
    keys.update(issued.record.id, expires_in=7200)
    rolled = keys.roll(issued.record.id, expires_in=60).record
    retiring = store.retiring_secrets(rolled.created_at, rolled.created_at.replace(year=3000))
    key = keys.revoke(issued.record.id)
    times = {**{f"customer.{k}": v for k, v in moments(customer).items()},
             **{f"key.{k}": v for k, v in moments(key).items()},
             **{f"retiring.{n}": at for n, (_, at) in enumerate(retiring)}}
    assert set(times) == {"customer.created_at", "customer.disabled_at", "key.created_at",
                          "key.disabled_at", "key.expires_at", "key.revoked_at",
                          "retiring.0"}
    assert {name: t.microsecond for name, t in times.items()} == dict.fromkeys(times, 0)
    shown = key.to_dict()
    assert all("." not in shown[name] for name in ("created_at", "disabled_at", "revoked_at"))
