"""Stripe-style object ids that say which environment they belong to (§18).

``new_id("ch", identity)`` returns ``ch_test_4eC39HqLyjWDarjtT1zdp7dc`` for a sandbox
caller and ``ch_live_…`` for a production one: the tag is the environment's ``id_tag``
(``[environments.NAME] id_tag``; ``test`` for sandbox, ``live`` for production, else the
environment's name). :func:`environment_of` reads it back, which is what lets the
``envroute_id`` path converters of ``django_envroute`` and ``flask_envroute`` answer a
live id sent with a test key with ``404 resource_missing`` before any view runs.

Where the tags come from: ``settings=`` when given; otherwise the configuration of the
running front end (the Django project's ``ENVROUTE``, the current Flask app's), which
each integration registers with :func:`add_settings_source`; a plain WSGI app calls
:func:`configure` once with its router's settings. Without any, the default tags apply.

Risk: an id's tag is a label, not a proof. It keeps honest mistakes (a live id pasted
into a test request) from reaching a view; the fence of ``django_envroute.db`` /
``flask_envroute.db`` is what keeps the data apart, because a forged ``ch_test_…`` id
is still looked up in the caller's own database only.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping

from .identity import Identity
from .sections import default_id_tag
from .settings import DEFAULT_ID_TAGS, EnvironmentSettings, Settings

#: The random part: 24 base62 characters (about 143 bits), as long as Stripe's.
RANDOM_LENGTH = 24
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PREFIX = re.compile(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9]+")
_ID = re.compile(
    rf"(?P<prefix>[A-Za-z0-9_]+?)_(?P<tag>[A-Za-z0-9]+)_[{ALPHABET}]{{{RANDOM_LENGTH}}}")

SettingsSource = Callable[[], Settings | None]
_sources: list[SettingsSource] = []


def add_settings_source(source: SettingsSource) -> None:
    """Register where the running front end's settings are found (the latest wins).

    A source returns ``None`` when it has nothing to say (no Flask app context, say), and
    the next one is asked. Registering the same source twice is a no-op.
    """
    if source not in _sources:
        _sources.append(source)


def configure(settings: Settings) -> None:
    """Use ``settings``' ``id_tag`` values from now on (for apps wrapped by ``EnvRouter``)."""
    add_settings_source(_Fixed(settings))


class _Fixed:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self) -> Settings:
        return self.settings

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Fixed) and other.settings is self.settings

    def __hash__(self) -> int:
        return id(self.settings)


def _environments(settings: Settings | None) -> Mapping[str, EnvironmentSettings] | None:
    if settings is not None:
        return settings.environments
    for source in reversed(_sources):
        found = source()
        if found is not None:
            return found.environments
    return None


def _tag(name: str, environment: EnvironmentSettings | None) -> str:
    # As the config's default: the name without the separators an id cannot hold
    # (``eu_prod`` -> ``euprod``), so a name and an identity of one environment agree.
    tag = (getattr(environment, "id_tag", "") or DEFAULT_ID_TAGS.get(name)
           or default_id_tag(name))
    if not _TAG.fullmatch(tag):
        raise ValueError(f"the id tag {tag!r} of the environment {name!r} must be letters "
                         "and digits only (set [environments.NAME] id_tag)")
    return tag


def id_tag(environment: str, *, settings: Settings | None = None) -> str:
    """The tag of ``environment``'s ids: its configured ``id_tag``, else the default."""
    environments = _environments(settings) or {}
    return _tag(environment, environments.get(environment))


def new_id(prefix: str, owner: Identity | str, *, settings: Settings | None = None) -> str:
    """A new object id ``<prefix>_<tag>_<24 base62>`` for ``owner``'s environment.

    ``owner`` is the request's :class:`~envroute.Identity` (its environment's configured
    ``id_tag``) or an environment name (the default tags: ``test``, ``live``, else the
    name; pass ``settings=`` to use the configured ones). The randomness comes from
    :mod:`secrets`, so ids cannot be guessed from one another.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"an id prefix is letters and digits (such as 'ch'), not {prefix!r}")
    if isinstance(owner, Identity):
        tag = id_tag(owner.environment, settings=settings)
    elif settings is not None:
        tag = id_tag(owner, settings=settings)
    else:
        tag = _tag(owner, None)
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return f"{prefix}_{tag}_{random_part}"


def environment_of(object_id: str, *, settings: Settings | None = None) -> str | None:
    """The environment an id made by :func:`new_id` belongs to, or ``None``.

    ``None`` for anything that is not such an id (``ch_1``, an empty string) and, when
    the configuration is known, for a tag that no configured environment uses.
    """
    match = _ID.fullmatch(object_id) if isinstance(object_id, str) else None
    if match is None:
        return None
    tag = match["tag"]
    environments = _environments(settings)
    if environments is None:  # no configuration known: the defaults, else the name itself
        defaults = {t: name for name, t in DEFAULT_ID_TAGS.items()}
        return defaults.get(tag, tag)
    for name, environment in environments.items():
        if _tag(name, environment) == tag:
            return name
    return None


__all__ = ["add_settings_source", "configure", "environment_of", "id_tag", "new_id"]
