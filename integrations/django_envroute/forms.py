"""The admin's forms: one to create a key (its secret is then shown once), one to edit.

Creation and changes go through :class:`envroute.KeyManager`, like ``envroute keys``, so
the admin follows the same rules: the environment must be configured, scopes must be
defined in ``[scopes]``, and metadata is a JSON object that may not set the reserved
names ``environment``, ``customer_id`` or ``key_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django import forms

from envroute import EnvrouteError
from envroute.commandtools import TAKES_EFFECT
from envroute.config import parse_duration
from envroute.guards import RESERVED_METADATA, check_metadata, refuse_secret

from .gateway import get_router
from .models import APIKey

# Django's ModelForm is generic only in django-stubs; it cannot be subscripted at run time.
if TYPE_CHECKING:
    _APIKeyModelForm = forms.ModelForm[APIKey]
else:
    _APIKeyModelForm = forms.ModelForm


def _forget(form: forms.BaseForm | None, field: str) -> None:
    """Re-render ``field`` empty: a secret typed there is never shown back, not even to
    the admin who typed it (Django shows an invalid form's submitted values)."""
    if form is not None:
        data = dict(form.data.items()) if not hasattr(form.data, "copy") else form.data.copy()
        data[form.add_prefix(field)] = ""
        form.data = data


def clean_metadata(value: Any, form: forms.BaseForm | None = None) -> dict[str, Any]:
    """A JSON object without the reserved names or a secret (the CLI's own rules)."""
    value = value or {}
    if not isinstance(value, dict):
        raise forms.ValidationError('Enter a JSON object, such as {"customer": "acme"}.')
    reserved = sorted(RESERVED_METADATA & set(value))
    if reserved:
        raise forms.ValidationError(f"{reserved[0]!r} is reserved: it is the identity's "
                                    "own, never metadata.")
    try:
        return check_metadata(value, "key")
    except EnvrouteError as exc:  # a secret pasted in: shown as prefix…last4 only
        _forget(form, "metadata")
        raise forms.ValidationError(str(exc)) from None


def clean_name(value: Any, form: forms.BaseForm | None = None) -> str:
    """A label, never a secret pasted by mistake (it would be shown everywhere)."""
    text = str(value or "")
    try:
        refuse_secret(text, "as a name")
    except EnvrouteError as exc:
        _forget(form, "name")
        raise forms.ValidationError(str(exc)) from None
    return text


class CreateKeyForm(_APIKeyModelForm):
    environment = forms.ChoiceField(help_text="Decides the prefix (sk_test_, sk_live_) "
                                    "and, with the metadata, where requests are routed.")
    metadata = forms.JSONField(required=False, initial=dict,
                               help_text='A JSON object, such as {"customer": "acme"}.')
    scopes = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                       help_text="None: an unrestricted key.")
    expires_in = forms.CharField(required=False, label="Expires in",
                                 help_text="Such as 30d or 12h; empty: never.")

    class Meta:
        model = APIKey
        fields = ("name",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_router().settings
        environment = cast(forms.ChoiceField, self.fields["environment"])
        environment.choices = [(name, name) for name in settings.environments]
        scopes = cast(forms.MultipleChoiceField, self.fields["scopes"])
        scopes.choices = [(name, name) for name in settings.scopes]
        self.order_fields(["environment", "name", "metadata", "scopes", "expires_in"])

    def clean_metadata(self) -> dict[str, Any]:
        return clean_metadata(self.cleaned_data.get("metadata"), self)

    def clean_name(self) -> str:
        return clean_name(self.cleaned_data.get("name"), self)

    def clean_expires_in(self) -> float | None:
        text = (self.cleaned_data.get("expires_in") or "").strip()
        if not text:
            return None
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if seconds <= 0:
            raise forms.ValidationError("Enter a positive duration, such as 30d.")
        return seconds


class ChangeKeyForm(_APIKeyModelForm):
    metadata = forms.JSONField(required=False, help_text='The key\'s own metadata, a JSON '
                               'object such as {"region": "eu"} (on top of its customer\'s).')
    revoke = forms.BooleanField(
        required=False, label="Revoked",
        help_text="Revoking is permanent; it " + TAKES_EFFECT + ".")
    confirm_revoke = forms.BooleanField(
        required=False, label="Yes, revoke it",
        help_text="Tick this too: a revoked key can never be used again.")

    class Meta:
        model = APIKey
        fields = ("name", "metadata")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.revoked_at is not None:
            self.fields["revoke"].initial = True
            self.fields["revoke"].disabled = True
            self.fields["confirm_revoke"].disabled = True

    def clean_metadata(self) -> dict[str, Any]:
        return clean_metadata(self.cleaned_data.get("metadata"), self)

    def clean_name(self) -> str:
        return clean_name(self.cleaned_data.get("name"), self)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (data.get("revoke") and self.instance.revoked_at is None
                and not data.get("confirm_revoke")):
            self.add_error("confirm_revoke", "Tick this to confirm the revocation.")
        return data
