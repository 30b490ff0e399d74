"""A worker that reads a moved customer before it has heard of the new backend (§12, §13).

Moving a customer is ``backends add`` then ``customers update``. A worker whose cache
misses reads the customer's new placement from the store straight away, while the news of
the new backend may still be on its way (the change marker's poll, a NOTIFY in flight):
the name it is routed to must be looked up again rather than refused with a 502.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envroute.backends import StoredBackends
from envroute.stores.base import BackendRecord
from envroute.stores.sqlite import SQLiteStore


class Counting(SQLiteStore):
    loads = 0

    def list_backends(self) -> list[BackendRecord]:
        self.loads += 1
        return super().list_backends()


@pytest.mark.parametrize("name, served", [
    pytest.param("dedicated-acme", True, id="stored-a-moment-ago"),
    pytest.param("dedicated-nobody", False, id="never-stored"),
])
def test_a_name_not_served_yet_is_looked_up_once_before_it_is_refused(
    tmp_path: Path, name: str, served: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    store, elsewhere = Counting(url), SQLiteStore(url)  # elsewhere: another process
    backends = StoredBackends(store)
    backends.load()
    elsewhere.add_backend(BackendRecord("dedicated-acme", "http://127.0.0.1:9"))
    try:
        assert (backends.get(name) is not None) is served
        assert store.loads == 2
        backends.get(name)  # a name that stays unknown: at most one look-up a second
        backends.get(name)
        assert store.loads == 2
    finally:
        backends.close()
        store.close()
        elsewhere.close()
