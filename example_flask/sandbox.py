"""The sandbox backend: the same API over mock data, with nothing persisted.

A separate Flask app, mounted by envroute as the backend ``sandbox``: sandbox keys reach
it and never the production views or database.
"""

from __future__ import annotations

from flask import Flask, request
from flask.typing import ResponseReturnValue
from flask_envroute import current_identity

MOCK_CHARGES = [
    {"id": "ch_test_1", "object": "charge", "amount": 1000, "currency": "usd",
     "description": "Mock charge (sandbox data)", "livemode": False},
    {"id": "ch_test_2", "object": "charge", "amount": 2500, "currency": "eur",
     "description": "Mock charge (sandbox data)", "livemode": False},
]

sandbox_app = Flask("example_flask.sandbox")


@sandbox_app.get("/v1/charges")
def list_charges() -> ResponseReturnValue:
    return {"object": "list", "livemode": False, "data": MOCK_CHARGES,
            "key_id": current_identity.key_id}


@sandbox_app.get("/v1/charges/<charge_id>")
def get_charge(charge_id: str) -> ResponseReturnValue:
    for charge in MOCK_CHARGES:
        if charge["id"] == charge_id:
            return charge
    return {"error": {"message": f"No such charge: {charge_id}"}}, 404


@sandbox_app.post("/v1/charges")
def create_charge() -> ResponseReturnValue:
    data = request.get_json(silent=True) or {}
    return {"id": "ch_test_new", "object": "charge", "amount": data.get("amount", 0),
            "currency": data.get("currency", "usd"), "livemode": False,
            "description": "Sandbox charge: not stored"}, 201
