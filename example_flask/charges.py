"""The production charges API: real rows in a SQLite file (``CHARGES_DATABASE``).

Only requests that envroute routed to the backend ``app`` (production keys) get here, so
the caller is always ``current_identity``, a production key.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from flask import Blueprint, abort, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask_envroute import current_identity

blueprint = Blueprint("charges", __name__, url_prefix="/v1")

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT ''
)
"""
SEED = [(129900, "usd", "Annual plan, ACME Corp"), (4900, "eur", "Monthly plan, Globex")]


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        db = sqlite3.connect(current_app.config["CHARGES_DATABASE"])
        db.row_factory = sqlite3.Row
        with db:
            db.execute(SCHEMA)
            if db.execute("SELECT COUNT(*) FROM charges").fetchone()[0] == 0:
                db.executemany("INSERT INTO charges (amount, currency, description) "
                               "VALUES (?, ?, ?)", SEED)
        g.db = db
    connection: sqlite3.Connection = g.db
    return connection


def close_db(exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def charge(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": f"ch_{row['id']}", "object": "charge", "amount": row["amount"],
            "currency": row["currency"], "description": row["description"], "livemode": True}


@blueprint.get("/charges")
def list_charges() -> ResponseReturnValue:
    rows = get_db().execute("SELECT * FROM charges ORDER BY id").fetchall()
    return {"object": "list", "livemode": True, "data": [charge(r) for r in rows],
            "key_id": current_identity.key_id}


@blueprint.get("/charges/<charge_id>")
def get_charge(charge_id: str) -> ResponseReturnValue:
    number = charge_id.removeprefix("ch_")
    row = get_db().execute("SELECT * FROM charges WHERE id = ?", (number,)).fetchone()
    if row is None:
        abort(404)
    return charge(row)


@blueprint.post("/charges")
def create_charge() -> ResponseReturnValue:
    data = request.get_json(silent=True) or {}
    amount, currency = data.get("amount"), data.get("currency", "usd")
    if not isinstance(amount, int) or amount <= 0 or not isinstance(currency, str):
        return {"error": {"message": "amount (a positive integer) is required"}}, 400
    db = get_db()
    with db:
        cursor = db.execute(
            "INSERT INTO charges (amount, currency, description, created_by) VALUES (?, ?, ?, ?)",
            (amount, currency, str(data.get("description", "")), current_identity.key_id))
    row = db.execute("SELECT * FROM charges WHERE id = ?", (cursor.lastrowid,)).fetchone()
    return jsonify(charge(row)), 201
