"""envroute.ids: Stripe-style ids that carry their environment (§18)."""

from __future__ import annotations

import re

import pytest

from envroute import Identity, ids
from envroute.config import parse_settings
from envroute.settings import Settings

SETTINGS = parse_settings({"secret": "x" * 32, "environments": {
    "sandbox": {}, "production": {}, "staging": {"prefix": "sk_stage_"}}})


@pytest.fixture(autouse=True)
def no_running_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """No configuration from a Django or Flask app that an earlier test started."""
    monkeypatch.setattr(ids, "_sources", [])


def with_tag(name: str, tag: str) -> Settings:
    """``[environments.NAME] id_tag`` as the config engineer's parser will give it."""
    from dataclasses import replace

    environments = dict(SETTINGS.environments)
    environments[name] = replace(environments[name], id_tag=tag)
    return replace(SETTINGS, environments=environments)


@pytest.mark.parametrize(("owner", "settings", "expected"), [
    pytest.param(Identity("key_1", "sandbox"), None, "ch_test_", id="identity-sandbox"),
    pytest.param(Identity("key_1", "production"), None, "ch_live_", id="identity-production"),
    pytest.param("sandbox", None, "ch_test_", id="name-sandbox"),
    pytest.param("production", None, "ch_live_", id="name-production"),
    pytest.param("staging", None, "ch_staging_", id="name-other: the name"),
    pytest.param(Identity("key_1", "staging"), with_tag("staging", "stg"), "ch_stg_",
                 id="identity-configured-tag"),
    pytest.param(Identity("key_1", "sandbox"), with_tag("sandbox", "sbx"), "ch_sbx_",
                 id="configured-tag-replaces-default"),
])
def test_new_id(owner: Identity | str, settings: Settings | None, expected: str) -> None:
    made = ids.new_id("ch", owner, settings=settings)
    assert made.startswith(expected)
    assert re.fullmatch(r"[0-9A-Za-z]{24}", made.removeprefix(expected))
    assert ids.environment_of(made, settings=settings or SETTINGS) == (
        owner.environment if isinstance(owner, Identity) else owner)


def test_new_ids_do_not_repeat() -> None:
    assert len({ids.new_id("ch", "sandbox") for _ in range(1000)}) == 1000


@pytest.mark.parametrize(("object_id", "settings", "expected"), [
    pytest.param("ch_test_" + "a" * 24, None, "sandbox", id="default-test"),
    pytest.param("ch_live_" + "a" * 24, None, "production", id="default-live"),
    pytest.param("sub_sched_live_" + "a" * 24, None, "production", id="prefix-with-underscore"),
    pytest.param("ch_staging_" + "a" * 24, None, "staging", id="unconfigured: the name"),
    pytest.param("ch_nope_" + "a" * 24, SETTINGS, None, id="configured: unknown tag"),
    pytest.param("ch_stg_" + "a" * 24, with_tag("staging", "stg"), "staging", id="custom tag"),
    pytest.param("ch_42", None, None, id="plain id"),
    pytest.param("ch_test_" + "a" * 23, None, None, id="short random part"),
    pytest.param("ch_test_" + "a" * 23 + "-", None, None, id="not base62"),
    pytest.param("", None, None, id="empty"),
])
def test_environment_of(object_id: str, settings: Settings | None,
                        expected: str | None) -> None:
    assert ids.environment_of(object_id, settings=settings) == expected


@pytest.mark.parametrize("prefix", ["", "ch-", "_ch", "ch_", "c h"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        ids.new_id(prefix, "sandbox")


def test_a_registered_source_gives_the_configured_tags() -> None:
    ids.configure(with_tag("staging", "stg"))
    assert ids.new_id("ch", Identity("key_1", "staging")).startswith("ch_stg_")
    assert ids.environment_of("ch_stg_" + "b" * 24) == "staging"
    assert ids.new_id("ch", "staging").startswith("ch_staging_")  # a name: the defaults


def test_a_flask_app_uses_its_configured_tags(base_config: dict[str, object]) -> None:
    """``[environments.NAME] id_tag`` reaches ``new_id(prefix, identity)`` and the
    ``envroute_id`` converter through the running app's settings."""
    from flask import Flask
    from flask_envroute import EnvRoute, current_identity, get_state

    app = Flask(__name__)
    config = {**base_config, "environments": {"sandbox": {}, "production": {},
                                              "staging": {"prefix": "sk_stage_",
                                                          "id_tag": "stg"}},
              "routes": [{"when": {}, "backend": "app"}]}
    EnvRoute(app, config=config)

    @app.get("/new")
    def made() -> dict[str, str]:
        return {"id": ids.new_id("ch", current_identity)}

    @app.get("/charges/<envroute_id:charge_id>")
    def charge(charge_id: str) -> dict[str, str]:
        return {"id": charge_id}

    state = get_state(app)
    try:
        key = state.key_manager().create("staging").secret
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        made_id = client.get("/new", headers=headers).json["id"]
        assert made_id.startswith("ch_stg_")
        assert client.get(f"/charges/{made_id}", headers=headers).status_code == 200
        live = "ch_live_" + "c" * 24
        assert client.get(f"/charges/{live}", headers=headers).status_code == 404
    finally:
        state.store.close()
