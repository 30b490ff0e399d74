"""The charges API for both environments, over ``flask_envroute.db.session``.

The session is bound to the caller's environment's database, so a sandbox key sees and
writes the sandbox's mock data, a live key the production data, and ``<envroute_id:…>``
answers a live id sent with a test key ``404 resource_missing`` before the view runs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Flask, abort, request
from flask.typing import ResponseReturnValue
from flask_envroute import current_identity
from flask_envroute.db import get_engine, session, using_environment
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from envroute.ids import environment_of, new_id

blueprint = Blueprint("charges", __name__, url_prefix="/v1")


class Base(DeclarativeBase):
    pass


class Charge(Base):
    __tablename__ = "charges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # ch_test_… / ch_live_…
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    description: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "object": "charge", "amount": self.amount,
                "currency": self.currency, "description": self.description,
                "livemode": environment_of(self.id) == "production"}


SEED = {
    "production": [("ch_live_000000000000000000000001", 129900, "usd", "Annual plan, ACME Corp"),
                   ("ch_live_000000000000000000000002", 4900, "eur", "Monthly plan, Globex")],
    "sandbox": [("ch_test_000000000000000000000001", 1000, "usd", "Mock charge (sandbox data)"),
                ("ch_test_000000000000000000000002", 2500, "eur", "Mock charge (sandbox data)")],
}


def create_tables(app: Flask) -> None:
    """Create each environment's table and seed it once (a real app runs migrations)."""
    with app.app_context():
        for environment, rows in SEED.items():
            with using_environment(environment) as db:
                Base.metadata.create_all(get_engine())
                if db.scalar(select(func.count()).select_from(Charge)) == 0:
                    db.add_all(Charge(id=i, amount=a, currency=c, description=d)
                               for i, a, c, d in rows)
                    db.commit()


@blueprint.get("/charges")
def list_charges() -> ResponseReturnValue:
    found = session.scalars(select(Charge).order_by(Charge.created_at, Charge.id))
    return {"object": "list", "livemode": current_identity.environment == "production",
            "data": [c.to_dict() for c in found], "key_id": current_identity.key_id}


@blueprint.get("/charges/<envroute_id:charge_id>")
def get_charge(charge_id: str) -> ResponseReturnValue:
    found = session.get(Charge, charge_id)
    if found is None:
        abort(404)
    return found.to_dict()


@blueprint.post("/charges")
def create_charge() -> ResponseReturnValue:
    data = request.get_json(silent=True) or {}
    amount, currency = data.get("amount"), data.get("currency", "usd")
    if not isinstance(amount, int) or amount <= 0 or not isinstance(currency, str):
        return {"error": {"message": "amount (a positive integer) is required"}}, 400
    charge = Charge(id=new_id("ch", current_identity), amount=amount, currency=currency[:3],
                    description=str(data.get("description", ""))[:200],
                    created_by=current_identity.key_id)
    session.add(charge)
    session.commit()
    return charge.to_dict(), 201
