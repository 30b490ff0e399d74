"""A stored backend record that no validation made (an older version's ``--timeout 0s``, a
row written by hand) never stops a gateway or ``envroute check``: that one backend is not
served (``backend_unavailable``), every other one is, and check names it in one line."""

from __future__ import annotations

from pathlib import Path

from werkzeug.test import Client

from envroute import EnvRouter
from envroute.lifecycle import KeyManager
from envroute.stores import open_store
from tests.contract.conftest import Cli
from tests.stores.records import backend
from tests.support.apps import SECRET

CONFIG = f"""
secret = "{SECRET}"
[store]
url = "sqlite:///keys.db"
[[routes]]
when = {{environment = "sandbox"}}
backend_from = "backend"
"""


def test_a_bad_stored_record_is_not_served_and_nothing_else_breaks(tmp_path: Path) -> None:
    (tmp_path / "envroute.toml").write_text(CONFIG)
    store = open_store(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        store.migrate()
        store.add_backend(backend("zero", url="http://127.0.0.1:9", timeout=0.0,
                                  connect_timeout=0.0, strip_prefix=""))
    finally:
        store.close()
    gateway = EnvRouter(None, str(tmp_path / "envroute.toml"))  # starts all the same
    try:
        manager = KeyManager(gateway.store, gateway.settings)
        secret = manager.create("sandbox", metadata={"backend": "zero"}).secret
        answer = Client(gateway).get("/", headers={"Authorization": f"Bearer {secret}"})
        assert answer.status_code == 502
        assert answer.json is not None and answer.json["code"] == "backend_unavailable"
    finally:
        gateway.close()
    result = Cli(tmp_path).run("check", status=1)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "backend zero (stored)" in result.stderr
