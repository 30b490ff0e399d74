"""The default store on a real SQLite file: WAL, versioned schema, many processes at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from envroute import KeyNotFound, StoreUnavailable
from envroute.keys import generate_secret, hash_key
from envroute.stores import open_store
from envroute.stores.base import Change, KeyRecord, utcnow
from envroute.stores.schema import VERSION
from envroute.stores.sqlite import SQLiteStore


def record(key_id: str = "key_1", secret: str = "") -> tuple[KeyRecord, bytes]:
    secret = secret or generate_secret("sk_test_")
    return (KeyRecord(id=key_id, environment="sandbox", prefix="sk_test_", last4=secret[-4:],
                      created_at=utcnow(), metadata={"customer": "acme"}),
            hash_key(b"k" * 32, secret))


def test_schema_is_created_on_first_use_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore) and not path.exists()
    assert store.lookup(b"x" * 32) is None
    with closing(sqlite3.connect(path)) as connection, connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA user_version").fetchone()[0] == VERSION
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    assert {"envroute_keys", "envroute_secrets"} <= tables
    store.close()


def test_only_the_keyed_hash_is_stored(sqlite_store: SQLiteStore) -> None:
    secret = generate_secret("sk_test_")
    rec, key_hash = record(secret=secret)
    sqlite_store.create(rec, key_hash)
    raw = Path(sqlite_store.path).read_bytes() + Path(sqlite_store.path + "-wal").read_bytes()
    assert secret.encode() not in raw and secret[8:-6].encode() not in raw
    match = sqlite_store.lookup(key_hash)
    assert match is not None and match.record.metadata == {"customer": "acme"}


def test_lifecycle(sqlite_store: SQLiteStore) -> None:
    rec, key_hash = record()
    sqlite_store.create(rec, key_hash)
    assert [r.id for r in sqlite_store.list_keys()] == ["key_1"]
    revoked = sqlite_store.revoke("key_1", utcnow())
    again = sqlite_store.revoke("key_1", utcnow() + timedelta(hours=1))
    assert revoked.revoked_at == again.revoked_at is not None
    with pytest.raises(KeyNotFound):
        sqlite_store.get("key_missing")
    with pytest.raises(KeyNotFound):
        sqlite_store.revoke("key_missing", utcnow())


def test_usage_is_recorded_in_one_batch(sqlite_store: SQLiteStore) -> None:
    for n in range(3):
        sqlite_store.create(*record(f"key_{n}"))
    now = utcnow().replace(microsecond=0)
    sqlite_store.record_usage({"key_0": now, "key_2": now})
    used = {r.id: r.last_used_at for r in sqlite_store.list_keys()}
    assert used == {"key_0": now, "key_1": None, "key_2": now}


def test_newer_schema_is_refused_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(f"PRAGMA user_version = {VERSION + 1}")
    with pytest.raises(StoreUnavailable, match="newer than this envroute supports"):
        SQLiteStore(f"sqlite:///{path}").lookup(b"x")


def test_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        SQLiteStore(f"sqlite:///{tmp_path}/no/such/dir/keys.db").lookup(b"x")


def test_threads_share_the_file_safely(sqlite_store: SQLiteStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                rec, key_hash = record(f"key_{n}_{i}")
                sqlite_store.create(rec, key_hash)
                assert sqlite_store.lookup(key_hash) is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(sqlite_store.list_keys()) == 160


WRITER = """
import sys
from envroute.keys import generate_secret, hash_key
from envroute.stores.base import KeyRecord, utcnow
from envroute.stores.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
for i in range(25):
    secret = generate_secret("sk_test_")
    store.create(KeyRecord(id=f"key_{sys.argv[2]}_{i}", environment="sandbox",
                           prefix="sk_test_", last4=secret[-4:], created_at=utcnow()),
                 hash_key(b"k" * 32, secret))
"""


def _open_files(path: Path) -> int:
    """How many of this process's file descriptors are ``path`` itself."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _target(fd) == str(path))


def _target(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:  # closed meanwhile
        return ""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_close_closes_every_threads_connection(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    store = SQLiteStore(f"sqlite:///{path}")
    looked_up, release = threading.Barrier(4), threading.Event()

    def reader() -> None:  # a server's thread, still alive when the store closes
        store.lookup(b"x" * 32)
        looked_up.wait()
        release.wait(timeout=30)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    looked_up.wait()
    assert _open_files(path) >= 3
    store.close()
    try:
        assert _open_files(path) == 0  # the other threads' connections as well
    finally:
        release.set()
        for thread in threads:
            thread.join()


def test_processes_migrate_once_and_write_concurrently(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(n)],
                                stderr=subprocess.PIPE) for n in range(4)]
    for writer in writers:
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err.decode()
    store = SQLiteStore(url)
    assert len(store.list_keys()) == 100 and store.schema_version() == VERSION
    store.close()


@pytest.mark.parametrize("url", ["sqlite://relative.db", "sqlite:///:memory:", "sqlite:///"])
def test_unusable_sqlite_urls_are_config_errors(url: str) -> None:
    from envroute import ConfigError

    with pytest.raises(ConfigError, match=r"store\.url"):
        SQLiteStore(url)


ONE_REQUEST = """
import sys
from werkzeug.test import Client
from envroute import EnvRouter, KeyManager
def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]
router = EnvRouter(app, {"secret": "s" * 40, "store": {"url": sys.argv[1]}})
key = KeyManager(router.store, router.settings).create("sandbox")
assert Client(router).get("/", headers={"X-API-Key": key.secret}).status_code == 200
print(key.record.id)
"""


def test_usage_pending_at_exit_is_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    key_id = subprocess.run([sys.executable, "-c", ONE_REQUEST, url], capture_output=True,
                            text=True, check=True, timeout=60).stdout.strip()
    store = SQLiteStore(url)
    assert store.get(key_id).last_used_at is not None  # well before the 10 s batch interval
    store.close()


REVOKE = """
import sys
from envroute.stores.base import utcnow
from envroute.stores.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
store.revoke(sys.argv[2], utcnow())
"""


def test_a_change_in_another_process_reaches_this_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    subprocess.run([sys.executable, "-c", WRITER, url, "a"], check=True, timeout=60)
    store = SQLiteStore(url)
    heard: list[Change] = []
    store.subscribe(heard.append)
    try:
        assert store.get("key_a_0").revoked_at is None  # first use: the watcher starts
        subprocess.run([sys.executable, "-c", REVOKE, url, "key_a_0"], check=True, timeout=60)
        deadline = time.monotonic() + 10
        while Change("all") not in heard:
            assert time.monotonic() < deadline, "the change never arrived"
            time.sleep(0.02)
        assert store.get("key_a_0").revoked_at is not None
    finally:
        store.close()
