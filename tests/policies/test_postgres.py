"""PostgreSQL specifics: NOTIFY on revoke and roll, the LISTEN thread, outages and recovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from werkzeug.test import Client

from envroute.stores.postgres import PostgresStore, parse_url
from tests.support.services import require_postgres

from .conftest import GatewayFactory, config, manager
from .tcpproxy import TcpProxy

pytestmark = pytest.mark.postgres


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def stores(pg_url: str) -> Iterator[Callable[..., PostgresStore]]:
    opened: list[PostgresStore] = []

    def make(url: str = pg_url, **kwargs: float) -> PostgresStore:
        store = PostgresStore(url, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.mark.parametrize(("url", "conninfo", "schema"), [
    pytest.param("postgresql://u@h/db", "postgresql://u@h/db?connect_timeout=3&"
                 "application_name=envroute", "", id="defaults"),
    pytest.param("postgres://h/db?schema=tenant_1&connect_timeout=9",
                 "postgresql://h/db?connect_timeout=9&application_name=envroute", "tenant_1",
                 id="schema-and-own-timeout"),
])
def test_parse_url(url: str, conninfo: str, schema: str) -> None:
    assert parse_url(url) == (conninfo, schema)


def test_a_schema_name_is_validated() -> None:
    from envroute import ConfigError

    with pytest.raises(ConfigError, match="schema"):
        PostgresStore('postgresql://h/db?schema=x";drop')


def test_revoke_and_roll_notify_every_subscriber(
    stores: Callable[..., PostgresStore], make_gateway: GatewayFactory, pg_url: str
) -> None:
    writer = make_gateway(config(pg_url))  # another process, as far as the store knows
    issued = manager(writer).create("sandbox")
    other = manager(writer).create("sandbox")
    listening = stores()
    heard: list[str | None] = []
    listening.subscribe(lambda change: heard.append(change.target))
    listening.get(issued.record.id)  # first use starts the listener
    wait_for(lambda: None in heard)  # connected: "drop everything" once

    manager(writer).revoke(issued.record.id)
    wait_for(lambda: issued.record.id in heard)
    manager(writer).roll(other.record.id)
    wait_for(lambda: other.record.id in heard)


def test_a_failed_transaction_notifies_nobody(
    stores: Callable[..., PostgresStore], pg_url: str
) -> None:
    from envroute import KeyNotFound
    from envroute.stores.base import CustomerRecord, utcnow

    listening = stores()
    heard: list[str | None] = []
    listening.subscribe(lambda change: heard.append(change.target))
    listening.migrate()
    wait_for(lambda: None in heard)
    writer = stores()
    with pytest.raises(KeyNotFound):
        writer.revoke("key_nobody", utcnow())
    writer.create_customer(CustomerRecord("later", created_at=utcnow()))
    # notifications arrive in commit order: once the later one is here, an earlier one
    # would be too
    wait_for(lambda: "later" in heard)
    assert "key_nobody" not in heard


def test_push_beats_a_long_cache_ttl(make_gateway: GatewayFactory, pg_url: str) -> None:
    gateway = make_gateway(config(pg_url, auth={"cache_ttl": "60s"}))
    admin = make_gateway(config(pg_url))
    issued = manager(admin).create("sandbox")
    client = Client(gateway)
    headers = {"Authorization": f"Bearer {issued.secret}"}
    assert client.get("/v1/charges", headers=headers).status_code == 200
    manager(admin).revoke(issued.record.id)

    def refused() -> bool:
        response = client.get("/v1/charges", headers=headers)
        return response.status_code == 401 and response.json["code"] == "revoked_key"

    wait_for(refused, timeout=1.0)


def test_down_answers_503_and_recovers_by_itself(
    make_gateway: GatewayFactory, pg_url: str, pg_schema: str,
    stores: Callable[..., PostgresStore]
) -> None:
    require_postgres()
    admin = make_gateway(config(pg_url))
    issued = manager(admin).create("sandbox")
    proxy = TcpProxy(5432)  # not started yet: nobody listens on its port
    proxied = stores(f"postgresql://127.0.0.1:{proxy.port}/test?schema={pg_schema}",
                     pool_timeout=0.5)
    gateway = make_gateway(config(pg_url, auth={"cache_ttl": "0s"}), store=proxied)
    heard: list[str | None] = []
    proxied.subscribe(lambda change: heard.append(change.target))
    client = Client(gateway)
    headers = {"Authorization": f"Bearer {issued.secret}"}

    def status() -> tuple[int, str]:
        response = client.get("/v1/charges", headers=headers)
        return response.status_code, response.json["code"] if response.json else "ok"

    try:
        assert status() == (503, "store_unavailable")
        proxy.start()
        wait_for(lambda: status()[0] == 200, timeout=30)
        wait_for(lambda: None in heard)  # the listener connected, and dropped the cache
        heard.clear()

        proxy.stop()  # PostgreSQL "goes away" under established connections
        assert status() == (503, "store_unavailable")
        proxy.start()
        wait_for(lambda: status()[0] == 200, timeout=30)
        wait_for(lambda: None in heard, timeout=30)  # reconnected: every cached key dropped
    finally:
        proxied.close()
        proxy.stop()


def in_thread(work: Callable[[], object]) -> BaseException | None:
    """Run ``work`` and return what it raised; a call that never returns fails the test
    (the bound checked here is generous: it catches a hang, it measures nothing)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            work()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert outcome, "the store call hung"
    return outcome[0]


def test_a_server_that_stops_answering_is_unavailable_not_a_hang(
    pg_url: str, pg_schema: str, stores: Callable[..., PostgresStore]
) -> None:
    from envroute import StoreUnavailable
    from envroute.stores.base import Change, CustomerRecord, utcnow

    require_postgres()
    stores(pg_url).create_customer(CustomerRecord("acme", created_at=utcnow()))
    proxy = TcpProxy(5432)
    proxy.start()
    proxied = stores(f"postgresql://127.0.0.1:{proxy.port}/test?schema={pg_schema}",
                     pool_timeout=0.5, query_timeout=0.5)
    heard: list[Change] = []
    proxied.subscribe(heard.append)
    try:
        assert proxied.get_customer("acme").id == "acme"  # pooled, and listening
        wait_for(lambda: Change("all") in heard)
        proxy.blackhole()  # the server accepts bytes and never answers
        for call in (lambda: proxied.get_customer("acme"),  # a pooled connection
                     lambda: proxied.list_customers(),
                     lambda: proxied.update_customer("acme", {"name": "x"})):
            assert isinstance(in_thread(call), StoreUnavailable)
        heard.clear()
        proxy.restore()
        wait_for(lambda: in_thread(lambda: proxied.get_customer("acme")) is None, timeout=30)
        # the listener noticed the silence, reconnected, and dropped what was cached
        wait_for(lambda: Change("all") in heard, timeout=30)
        stores(pg_url).update_customer("acme", {"name": "after"})
        wait_for(lambda: Change("customer", "acme") in heard, timeout=30)
    finally:
        proxied.close()
        proxy.stop()


@pytest.mark.parametrize(("url", "cause"), [
    pytest.param("postgresql://127.0.0.1:{port}/test", "refused", id="nobody-listening"),
    pytest.param("postgresql://127.0.0.1:5432/envroute_no_such_db", "does not exist",
                 id="no-such-database"),
    pytest.param("postgresql://envroute_no_such_role@127.0.0.1:5432/test", "envroute_no_such",
                 id="no-such-role"),
])
def test_a_refusing_server_says_why_in_one_line(
    url: str, cause: str, stores: Callable[..., PostgresStore],
    capfd: pytest.CaptureFixture[str]
) -> None:
    from envroute import StoreUnavailable
    from tests.support.processes import free_port

    require_postgres()
    store = stores(url.format(port=free_port()), pool_timeout=0.5)
    with pytest.raises(StoreUnavailable, match=cause) as caught:
        store.migrate()
    assert "\n" not in str(caught.value)
    assert "error connecting" not in capfd.readouterr().err  # no pool chatter
