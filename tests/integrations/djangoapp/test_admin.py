"""The admin: create a key (secret shown once), list, revoke, roll; never un-revoke."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from django_envroute.models import APIKey

from envroute import IssuedKey
from tests.integrations.conftest import bearer, problem_of

pytestmark = pytest.mark.django_db
ADD_URL = "/admin/django_envroute/apikey/add/"
LIST_URL = "/admin/django_envroute/apikey/"
SECRET_PATTERN = re.compile(r"\b[sr]k_(?:test|live)_[0-9A-Za-z]{38}\b")


def change_url(key_id: str) -> str:
    return f"/admin/django_envroute/apikey/{key_id}/change/"


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
    pytest.param({"metadata": '{"environment": "production"}'}, "set by the environment",
                 id="metadata-sets-environment"),
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


def test_revoking_from_the_change_form(admin_client: Client, client: Client,
                                       make_key: Callable[..., IssuedKey]) -> None:
    issued = make_key()
    response = admin_client.post(change_url(issued.record.id),
                                 {"name": "renamed", "revoke": "on"}, follow=True)
    assert response.status_code == 200
    key = APIKey.objects.get(pk=issued.record.id)
    assert key.name == "renamed" and key.revoked_at is not None
    refused = client.get("/v1/charges", headers=bearer(issued.secret))
    assert problem_of(refused.content)["code"] == "revoked_key"
    # the checkbox is now disabled: posting it unticked does not un-revoke
    admin_client.post(change_url(key.id), {"name": "renamed again"})
    assert APIKey.objects.get(pk=key.id).revoked_at == key.revoked_at


def test_revoke_action(admin_client: Client, client: Client,
                       make_key: Callable[..., IssuedKey]) -> None:
    first, second = make_key(), make_key()
    response = admin_client.post(LIST_URL, {"action": "revoke_keys",
                                            "_selected_action": [first.record.id]},
                                 follow=True)
    assert "Revoked 1 key" in response.content.decode()
    assert client.get("/v1/charges", headers=bearer(first.secret)).status_code == 401
    assert client.get("/v1/charges", headers=bearer(second.secret)).status_code == 200


def test_roll_action_shows_the_new_secret_once(admin_client: Client, client: Client,
                                               make_key: Callable[..., IssuedKey]) -> None:
    issued = make_key()
    response = admin_client.post(LIST_URL, {"action": "roll_keys",
                                            "_selected_action": [issued.record.id]},
                                 follow=True)
    page = response.content.decode()
    secrets = SECRET_PATTERN.findall(page)
    assert len(secrets) == 1 and secrets[0] != issued.secret
    assert "you will not be able to see it again" in page
    assert client.get("/v1/charges", headers=bearer(secrets[0])).status_code == 200
    assert client.get("/v1/charges", headers=bearer(issued.secret)).status_code == 401
    assert secrets[0] not in admin_client.get(LIST_URL).content.decode()


def test_rolling_a_revoked_key_is_refused(admin_client: Client,
                                          make_key: Callable[..., IssuedKey]) -> None:
    issued = make_key()
    APIKey.objects.filter(pk=issued.record.id).update(revoked_at=timezone.now())
    response = admin_client.post(LIST_URL, {"action": "roll_keys",
                                            "_selected_action": [issued.record.id]},
                                 follow=True)
    page = response.content.decode()
    assert "cannot be rolled" in page
    assert not SECRET_PATTERN.findall(page)


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
