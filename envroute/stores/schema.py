"""The one description of the store's tables, rendered for SQLite and for PostgreSQL.

Both SQL stores apply the same numbered steps; the schema's version is how many have run
(``PRAGMA user_version`` on SQLite, the ``envroute_schema_version`` table on PostgreSQL).
Step 1 is envroute 0.1.0's schema, byte for byte in meaning, so a 0.1 store is simply a
store at version 1: opening it with 0.2 runs step 2 in place, and its keys keep working
with no customer. Risk: a step, once released, must never change; add a new one instead.

Column types are named once here (``time``, ``json``, ``list``…) and mapped to each
database's own type, so the two SQL stores cannot drift apart. The Django store keeps the
same columns through its models and migrations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

#: abstract type -> (SQLite type, PostgreSQL type)
TYPES: dict[str, tuple[str, str]] = {
    "text": ("TEXT", "TEXT"),
    "json": ("TEXT", "JSONB"),          # an object, as compact JSON text on SQLite
    "list": ("TEXT", "TEXT[]"),         # a list of strings, as a JSON array on SQLite
    "time": ("TEXT", "TIMESTAMPTZ"),    # ISO 8601 in UTC on SQLite: sorts as it compares
    "date": ("TEXT", "DATE"),           # YYYY-MM-DD on SQLite
    "bytes": ("BLOB", "BYTEA"),
    "int": ("INTEGER", "BIGINT"),
    "real": ("REAL", "DOUBLE PRECISION"),
    "serial": ("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"),
}

#: Defaults that differ per database: the empty JSON object and the empty list.
EMPTY = {"json": ("'{}'", "'{}'"), "list": ("'[]'", "'{}'")}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    null: bool = True
    default: str | None = None    # a SQL literal both databases read, or "empty"
    references: str | None = None  # "table" (its primary key ``id``)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class AddColumn:
    table: str
    column: Column


@dataclass(frozen=True)
class AddIndex:
    table: str
    columns: tuple[str, ...]


Operation = Table | AddColumn | AddIndex


def _c(name: str, type_: str, *, null: bool = True, default: str | None = None,
       references: str | None = None) -> Column:
    return Column(name, type_, null, default, references)


#: Step 1: envroute 0.1.0.
V1: tuple[Operation, ...] = (
    Table("envroute_keys", (
        _c("id", "text", null=False), _c("environment", "text", null=False),
        _c("prefix", "text", null=False), _c("last4", "text", null=False),
        _c("name", "text", null=False, default="''"),
        _c("metadata", "json", null=False, default="empty"),
        _c("scopes", "list", null=False, default="empty"),
        _c("created_at", "time", null=False), _c("expires_at", "time"),
        _c("revoked_at", "time"), _c("last_used_at", "time"),
    ), primary_key=("id",)),
    Table("envroute_secrets", (
        _c("hash", "bytes", null=False),
        _c("key_id", "text", null=False, references="envroute_keys"),
        _c("created_at", "time", null=False), _c("expires_at", "time"),
    ), primary_key=("hash",), indexes=(("key_id",),)),
)

#: Step 2: envroute 0.2.0: customers, disable, stored backends, usage, audit, fingerprints.
V2: tuple[Operation, ...] = (
    Table("envroute_customers", (
        _c("id", "text", null=False), _c("name", "text", null=False, default="''"),
        _c("metadata", "json", null=False, default="empty"),
        _c("created_at", "time", null=False), _c("disabled_at", "time"),
    ), primary_key=("id",)),
    AddColumn("envroute_keys", _c("customer_id", "text", references="envroute_customers")),
    AddColumn("envroute_keys", _c("disabled_at", "time")),
    AddIndex("envroute_keys", ("customer_id",)),
    # '' = made before 0.2 (unknown); the verifier labels it when such a key verifies
    AddColumn("envroute_secrets", _c("fingerprint", "text", null=False, default="''")),
    Table("envroute_backends", (
        _c("name", "text", null=False), _c("url", "text", null=False),
        _c("timeout", "real", null=False), _c("connect_timeout", "real", null=False),
        _c("strip_prefix", "text", null=False, default="''"),
        _c("pool_size", "int", null=False, default="0"),
        _c("created_at", "time", null=False), _c("updated_at", "time", null=False),
    ), primary_key=("name",)),
    Table("envroute_usage", (
        _c("key_id", "text", null=False), _c("day", "date", null=False),
        _c("requests", "int", null=False, default="0"),
        _c("errors", "int", null=False, default="0"),
    ), primary_key=("key_id", "day")),
    Table("envroute_audit", (
        _c("seq", "serial"), _c("at", "time", null=False), _c("actor", "text", null=False),
        _c("action", "text", null=False), _c("kind", "text", null=False),
        _c("target", "text", null=False), _c("changes", "json", null=False, default="empty"),
        _c("customer_id", "text"),
    ), indexes=(("kind", "target"), ("customer_id",))),
)

STEPS: tuple[tuple[Operation, ...], ...] = (V1, V2)
#: The schema version this envroute writes.
VERSION = len(STEPS)


def _column(column: Column, dialect: Dialect, table: Callable[[str], str],
            name: Callable[[str], str]) -> str:
    index = 0 if dialect == "sqlite" else 1
    parts = [name(column.name), TYPES[column.type][index]]
    if not column.null:
        parts.append("NOT NULL")
    if column.default == "empty":
        parts.append(f"DEFAULT {EMPTY[column.type][index]}")
    elif column.default is not None:
        parts.append(f"DEFAULT {column.default}")
    if column.references:
        parts.append(f"REFERENCES {table(column.references)} ({name('id')})")
    return " ".join(parts)


def render(step: tuple[Operation, ...], dialect: Dialect, *,
           table: Callable[[str], str], name: Callable[[str], str]) -> list[str]:
    """The DDL statements of one step. ``table`` qualifies and quotes a table name
    (PostgreSQL: ``"schema"."envroute_keys"``); ``name`` quotes any other identifier."""
    statements: list[str] = []

    def index(on: str, columns: tuple[str, ...]) -> str:
        index_name = name(f"{on}_{'_'.join(columns)}")
        return (f"CREATE INDEX {index_name} ON {table(on)} "
                f"({', '.join(name(c) for c in columns)})")

    for operation in step:
        if isinstance(operation, Table):
            body = [_column(c, dialect, table, name) for c in operation.columns]
            if operation.primary_key:
                body.append(f"PRIMARY KEY ({', '.join(map(name, operation.primary_key))})")
            statements.append(f"CREATE TABLE {table(operation.name)} ({', '.join(body)})")
            statements += [index(operation.name, cols) for cols in operation.indexes]
        elif isinstance(operation, AddColumn):
            column = _column(operation.column, dialect, table, name)
            statements.append(f"ALTER TABLE {table(operation.table)} ADD COLUMN {column}")
        else:
            statements.append(index(operation.table, operation.columns))
    return statements
