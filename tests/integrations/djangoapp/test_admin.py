"""The admin: create a key (secret shown once), list, revoke, roll; never un-revoke."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from django.contrib.admin.utils import quote
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_envroute.gateway import get_router
from django_envroute.models import APIKey

from envroute import IssuedKey
from tests.integrations.conftest import bearer, problem_of

pytestmark = pytest.mark.django_db
#: Until the django:// store's 0.2 models (customers, audit, usage) are installed.
NEEDS_DJANGO_02 = pytest.mark.skipif(
    not hasattr(__import__("django_envroute.models").models, "Customer"),
    reason="the django:// store has no 0.2 models yet")
ADD_URL = "/admin/django_envroute/apikey/add/"
LIST_URL = "/admin/django_envroute/apikey/"
SECRET_PATTERN = re.compile(r"\b[sr]k_(?:test|live)_[0-9A-Za-z]{38}\b")


def change_url(key_id: str) -> str:
    """The admin's own address for a key: Django's admin escapes ``_`` in object ids, and
    reads ``_3F`` back as ``?``, so a hand-made URL for ``key_3F…`` finds no key."""
    return reverse("admin:django_envroute_apikey_change", args=[quote(key_id)])


def create_in_admin(admin_client: Client, **fields: str) -> tuple[APIKey, str, str]:
    data = {"environment": "production", "name": "From the admin",
            "metadata": '{"customer": "acme"}', "expires_in": "", **fields}
    response = admin_client.post(ADD_URL, data, follow=True)
    assert response.status_code == 200, response.content
    page = response.content.decode()
    secrets = SECRET_PATTERN.findall(page)
    assert len(secrets) == 1, "the new secret is shown exactly once"
    return APIKey.objects.get(name=data["name"]), secrets[0], page


def test_the_add_form_offers_the_configured_environments_and_scopes(
        admin_client: Client) -> None:
    page = admin_client.get(ADD_URL).content.decode()
    for name in ("sandbox", "production", "staging", "charges:read"):
        assert f'value="{name}"' in page


def test_creating_a_key_shows_its_secret_once_and_never_again(admin_client: Client,
                                                             client: Client) -> None:
    key, secret, page = create_in_admin(admin_client)
    assert "you will not be able to see it again" in page
    assert key.metadata == {"customer": "acme"}
    assert secret.startswith("sk_live_") and key.last4 == secret[-4:]
    assert client.get("/v1/charges", headers=bearer(secret)).json()["key_id"] == key.id
    for url in (LIST_URL, change_url(key.id), LIST_URL + "?q=admin"):
        again = admin_client.get(url).content.decode()
        assert secret not in again
        assert f"sk_live_…{key.last4}" in again
    assert secret not in str(list(APIKey.objects.values()))


@pytest.mark.parametrize(("fields", "error"), [
    pytest.param({"metadata": "[1, 2]"}, "JSON object", id="metadata-not-object"),
    pytest.param({"metadata": '{"environment": "production"}'}, "&#x27;environment&#x27; "
                 "is reserved", id="metadata-sets-environment"),
    pytest.param({"metadata": '{"customer_id": "x"}'}, "&#x27;customer_id&#x27; is reserved",
                 id="metadata-sets-customer-id"),
    pytest.param({"expires_in": "soon"}, "not a duration", id="bad-expiry"),
    pytest.param({"environment": "moon"}, "Select a valid choice", id="unknown-environment"),
])
def test_the_add_form_refuses_what_the_cli_refuses(admin_client: Client,
                                                   fields: dict[str, str], error: str) -> None:
    data = {"environment": "production", "name": "x", "metadata": "{}", **fields}
    response = admin_client.post(ADD_URL, data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not APIKey.objects.exists()


def test_a_restricted_key_with_an_expiry(admin_client: Client) -> None:
    key, secret, _ = create_in_admin(admin_client, environment="sandbox",
                                     scopes="charges:read", expires_in="30d")
    assert secret.startswith("rk_test_")
    assert key.scopes == ["charges:read"]
    assert key.expires_at is not None and key.expires_at > timezone.now()


@NEEDS_DJANGO_02
def test_revoking_from_the_change_form_asks_for_confirmation(
        admin_client: Client, client: Client, make_key: Callable[..., IssuedKey]) -> None:
    issued = make_key()
    unconfirmed = admin_client.post(change_url(issued.record.id),
                                    {"name": "renamed", "metadata": "{}", "revoke": "on"})
    assert "Tick this to confirm the revocation" in unconfirmed.content.decode()
    assert APIKey.objects.get(pk=issued.record.id).revoked_at is None
    response = admin_client.post(change_url(issued.record.id),
                                 {"name": "renamed", "metadata": "{}", "revoke": "on",
                                  "confirm_revoke": "on"}, follow=True)
    assert response.status_code == 200
    key = APIKey.objects.get(pk=issued.record.id)
    assert key.name == "renamed" and key.revoked_at is not None
    refused = client.get("/v1/charges", headers=bearer(issued.secret))
    assert problem_of(refused.content)["code"] == "revoked_key"
    # the checkbox is now disabled: posting it unticked does not un-revoke
    admin_client.post(change_url(key.id), {"name": "renamed again", "metadata": "{}"})
    assert APIKey.objects.get(pk=key.id).revoked_at == key.revoked_at


@NEEDS_DJANGO_02
def test_key_metadata_is_editable_and_validated(admin_client: Client, client: Client,
                                                make_key: Callable[..., IssuedKey]) -> None:
    issued = make_key(metadata={"tier": "free"})
    bad = admin_client.post(change_url(issued.record.id),
                            {"name": "", "metadata": '{"key_id": "x"}'})
    assert "is reserved" in bad.content.decode()
    admin_client.post(change_url(issued.record.id),
                      {"name": "edited", "metadata": '{"tier": "enterprise"}'})
    key = APIKey.objects.get(pk=issued.record.id)
    assert key.metadata == {"tier": "enterprise"} and key.name == "edited"
    seen = client.get("/v1/charges", headers=bearer(issued.secret)).json()
    assert seen["metadata"] == {"tier": "enterprise"}  # honoured at once in this process
    log = get_router().store.list_audit(key_id=key.id)
    assert log[0].action == "key.updated" and log[0].actor == "admin"


def test_revoke_action_asks_first(admin_client: Client, client: Client,
                                  make_key: Callable[..., IssuedKey]) -> None:
    first, second = make_key(), make_key()
    asked = admin_client.post(LIST_URL, {"action": "revoke_keys",
                                         "_selected_action": [first.record.id]})
    page = asked.content.decode()
    assert "this cannot be undone" in page and "within about 1 s" in page
    assert client.get("/v1/charges", headers=bearer(first.secret)).status_code == 200
    response = admin_client.post(LIST_URL, {"action": "revoke_keys", "confirm": "yes",
                                            "_selected_action": [first.record.id]},
                                 follow=True)
    assert "Revoked 1 key" in response.content.decode()
    assert client.get("/v1/charges", headers=bearer(first.secret)).status_code == 401
    assert client.get("/v1/charges", headers=bearer(second.secret)).status_code == 200


def roll(admin_client: Client, key_id: str, grace: str = "0s") -> str:
    asked = admin_client.post(LIST_URL, {"action": "roll_keys", "_selected_action": [key_id]})
    assert 'name="grace"' in asked.content.decode()
    response = admin_client.post(LIST_URL, {"action": "roll_keys", "confirm": "yes",
                                            "grace": grace, "_selected_action": [key_id]},
                                 follow=True)
    return response.content.decode()


@pytest.mark.parametrize(("grace", "old_status"), [
    pytest.param("0s", 401, id="retired-now"),
    pytest.param("24h", 200, id="grace-period"),
])
def test_roll_action_offers_a_grace_period_and_shows_the_secret_once(
        admin_client: Client, client: Client, make_key: Callable[..., IssuedKey],
        grace: str, old_status: int) -> None:
    issued = make_key()
    page = roll(admin_client, issued.record.id, grace)
    secrets = SECRET_PATTERN.findall(page)
    assert len(secrets) == 1 and secrets[0] != issued.secret
    assert "you will not be able to see it again" in page
    assert client.get("/v1/charges", headers=bearer(secrets[0])).status_code == 200
    assert client.get("/v1/charges", headers=bearer(issued.secret)).status_code == old_status
    assert secrets[0] not in admin_client.get(LIST_URL).content.decode()


def test_rolling_a_revoked_key_is_refused(admin_client: Client,
                                          make_key: Callable[..., IssuedKey]) -> None:
    issued = make_key()
    APIKey.objects.filter(pk=issued.record.id).update(revoked_at=timezone.now())
    page = roll(admin_client, issued.record.id)
    assert "cannot be rolled" in page
    assert not SECRET_PATTERN.findall(page)


@pytest.mark.parametrize("action", ["disable_keys", "enable_keys"])
def test_disabling_a_selection_with_a_revoked_key_changes_the_others(
        admin_client: Client, make_key: Callable[..., IssuedKey], action: str) -> None:
    live, revoked = make_key(), make_key()
    APIKey.objects.filter(pk=revoked.record.id).update(revoked_at=timezone.now())
    if action == "enable_keys":
        APIKey.objects.filter(pk=live.record.id).update(disabled_at=timezone.now())
    response = admin_client.post(LIST_URL, {
        "action": action, "_selected_action": [live.record.id, revoked.record.id]},
        follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "revocation is permanent" in page
    assert (APIKey.objects.get(pk=live.record.id).disabled_at is None) == (
        action == "enable_keys")
    assert APIKey.objects.get(pk=revoked.record.id).disabled_at is None


@pytest.mark.parametrize("field", ["metadata", "name"])
def test_a_secret_pasted_in_the_add_form_is_refused_and_not_shown(
        admin_client: Client, make_key: Callable[..., IssuedKey], field: str) -> None:
    secret = make_key().secret
    data = {"environment": "production", "name": "n", "metadata": "{}", "expires_in": "",
            field: json.dumps({"note": secret}) if field == "metadata" else secret}
    page = admin_client.post(ADD_URL, data).content.decode()
    assert "is a secret" in page and secret not in page
    assert not APIKey.objects.filter(name=secret).exists()
    assert not APIKey.objects.filter(metadata__note=secret).exists()


def test_view_site_never_leads_to_a_401(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()
    assert "View site" not in page


@NEEDS_DJANGO_02
def test_a_keys_page_shows_its_usage(admin_client: Client,
                                     make_key: Callable[..., IssuedKey]) -> None:
    from envroute.stores import UsageBatch
    from envroute.stores.base import utcnow

    issued = make_key()
    get_router().store.write_usage(UsageBatch(counts={
        (issued.record.id, utcnow().date()): (12, 3)}))
    page = admin_client.get(change_url(issued.record.id)).content.decode()
    assert "<svg" in page and "12 requests, 3 errors" in page


def test_keys_cannot_be_deleted_from_the_admin(admin_client: Client,
                                               make_key: Callable[..., IssuedKey]) -> None:
    issued = make_key()
    url = f"/admin/django_envroute/apikey/{issued.record.id}/delete/"
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert APIKey.objects.filter(pk=issued.record.id).exists()


def test_the_model_refuses_to_unrevoke(make_key: Callable[..., IssuedKey]) -> None:
    key = APIKey.objects.get(pk=make_key().record.id)
    key.revoked_at = timezone.now()
    key.save()
    key.revoked_at = None
    with pytest.raises(ValidationError, match="cannot be un-revoked"):
        key.clean()
    with pytest.raises(ValidationError, match="cannot be un-revoked"):
        key.save()
    fresh = APIKey.objects.get(pk=key.pk)
    assert fresh.revoked_at is not None
    fresh.revoked_at = None
    with pytest.raises(ValidationError):
        fresh.full_clean()


def test_the_admin_is_exempt_from_keys_but_not_from_login(client: Client) -> None:
    response = client.get(LIST_URL)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


CUSTOMERS = "/admin/django_envroute/customer/"


@NEEDS_DJANGO_02
def test_customers_are_listed_created_edited_and_disabled(
        admin_client: Client, client: Client, make_key: Callable[..., IssuedKey]) -> None:
    from django_envroute.models import Customer

    bad = admin_client.post(CUSTOMERS + "add/", {"id": "a b", "name": "",
                                                 "metadata": "{}"})
    assert "A-Za-z0-9_.:-" in bad.content.decode()
    reserved = admin_client.post(CUSTOMERS + "add/", {"id": "acme", "name": "",
                                                      "metadata": '{"environment": "x"}'})
    assert "is reserved" in reserved.content.decode() and not Customer.objects.exists()
    admin_client.post(CUSTOMERS + "add/", {"id": "acme", "name": "ACME",
                                           "metadata": '{"tier": "gold"}'})
    assert Customer.objects.get(pk="acme").metadata == {"tier": "gold"}
    issued = make_key(customer_id="acme", metadata={"region": "eu"})
    assert client.get("/v1/charges", headers=bearer(issued.secret)).json()["metadata"] == {
        "tier": "gold", "region": "eu"}
    admin_client.post(CUSTOMERS + "acme/change/", {"name": "ACME Corp",
                                                   "metadata": '{"tier": "enterprise"}'})
    assert client.get("/v1/charges", headers=bearer(issued.secret)).json()["metadata"][
        "tier"] == "enterprise"  # honoured at once in this process
    page = admin_client.get(CUSTOMERS + "acme/change/").content.decode()
    assert issued.record.id in page and issued.record.display in page
    assert issued.secret not in page and "<svg" in page
    assert "ACME Corp" in admin_client.get(CUSTOMERS).content.decode()
    admin_client.post(CUSTOMERS, {"action": "disable_customers", "_selected_action": ["acme"]})
    refused = client.get("/v1/charges", headers=bearer(issued.secret))
    assert problem_of(refused.content)["code"] == "disabled_key"
    admin_client.post(CUSTOMERS, {"action": "enable_customers", "_selected_action": ["acme"]})
    assert client.get("/v1/charges", headers=bearer(issued.secret)).status_code == 200
    assert admin_client.post(CUSTOMERS + "acme/delete/", {"post": "yes"}).status_code == 403


@NEEDS_DJANGO_02
def test_a_customers_page_links_to_keys_whose_ids_django_would_misread(
        admin_client: Client, make_key: Callable[..., IssuedKey],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from envroute import keys

    # Django's admin reads "_3F" in an object id as "?": the link must be escaped.
    monkeypatch.setattr(keys, "generate_key_id", lambda: "key_3F" + "a" * 22)
    admin_client.post(CUSTOMERS + "add/", {"id": "acme", "name": "", "metadata": "{}"})
    issued = make_key(customer_id="acme")
    page = admin_client.get(CUSTOMERS + "acme/change/").content.decode()
    link = re.search(r'<a href="([^"]+)">key_3Fa', page)
    assert link is not None, page
    key_page = admin_client.get(link.group(1))
    assert key_page.status_code == 200, key_page.get("Location")
    assert issued.record.display in key_page.content.decode()


@NEEDS_DJANGO_02
def test_the_audit_log_is_read_only_and_linked_from_the_index(
        admin_client: Client, make_key: Callable[..., IssuedKey]) -> None:
    from django_envroute.models import AuditEntry

    admin_client.post(CUSTOMERS + "add/", {"id": "acme", "name": "", "metadata": "{}"})
    issued = make_key()
    index = admin_client.get("/admin/").content.decode()
    assert "/admin/django_envroute/auditentry/" in index
    page = admin_client.get("/admin/django_envroute/auditentry/").content.decode()
    assert "customer.created" in page and "key.created" in page
    assert issued.secret not in page
    entry = AuditEntry.objects.get(action="customer.created")
    assert entry.actor == "admin"
    assert admin_client.get("/admin/django_envroute/auditentry/add/").status_code == 403
    change = f"/admin/django_envroute/auditentry/{entry.pk}/change/"
    assert admin_client.post(change, {"actor": "mallory"}).status_code == 403
    assert AuditEntry.objects.get(pk=entry.pk).actor == "admin"


@pytest.mark.parametrize(("action", "extra"), [
    pytest.param("revoke_keys", {"confirm": "yes"}, id="revoke"),
    pytest.param("disable_keys", {}, id="disable"),
    pytest.param("enable_keys", {}, id="enable"),
])
def test_an_action_the_store_refuses_is_a_message_not_a_500(
        admin_client: Client, client: Client, make_key: Callable[..., IssuedKey],
        monkeypatch: pytest.MonkeyPatch, action: str, extra: dict[str, str]) -> None:
    """The store busy (SQLite locked by a worker) or down: the admin says which key was
    not changed, and the others are."""
    from envroute import StoreUnavailable

    refused, changed = make_key(), make_key()
    if action == "enable_keys":
        for issued in (refused, changed):
            get_router().keys.disable(issued.record.id)
    store = get_router().store
    method = {"revoke_keys": "revoke", "disable_keys": "set_key_disabled",
              "enable_keys": "set_key_disabled"}[action]
    real = getattr(store, method)

    def busy(key_id: str, *args: object) -> object:
        if key_id == refused.record.id:
            raise StoreUnavailable("Django database 'default': database is locked")
        return real(key_id, *args)

    monkeypatch.setattr(store, method, busy)
    response = admin_client.post(LIST_URL, {"action": action, **extra, "_selected_action": [
        refused.record.id, changed.record.id]}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Not changed: {refused.record.id}: Django database" in page
    assert "1 key(s)" in page
    monkeypatch.undo()
    now, before = (200, 401) if action == "enable_keys" else (401, 200)
    assert client.get("/v1/charges", headers=bearer(changed.secret)).status_code == now
    assert client.get("/v1/charges", headers=bearer(refused.secret)).status_code == before
