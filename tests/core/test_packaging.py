"""The distribution's promises: a light core, the console script, typed packages."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

OPTIONAL = ["flask", "django", "jwt", "limits", "psycopg", "psycopg_pool", "redis"]


def test_importing_the_core_imports_no_framework_or_extra() -> None:
    code = ("import sys, json, envroute, envroute.cli, envroute.proxy, envroute.stores.sqlite; "
            f"print(json.dumps([m for m in {OPTIONAL!r} if m in sys.modules]))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, check=True).stdout)
    assert loaded == []


def test_distribution_metadata() -> None:
    dist = metadata.distribution("envroute")
    assert dist.metadata["Requires-Python"] == ">=3.11"
    core = [r for r in dist.requires or [] if "extra ==" not in r]
    assert sorted(r.split(">")[0].split("=")[0].strip() for r in core) == ["requests",
                                                                          "werkzeug"]
    extras = set(dist.metadata.get_all("Provides-Extra") or [])
    assert {"flask", "django", "jwt", "postgres", "redis", "all", "test"} <= extras
    scripts = [e for e in dist.entry_points if e.group == "console_scripts"]
    assert [(e.name, e.value) for e in scripts] == [("envroute", "envroute.cli:main")]


@pytest.mark.parametrize("package", ["envroute", "flask_envroute", "django_envroute"])
def test_packages_ship_py_typed(package: str) -> None:
    module = __import__(package)
    assert (Path(module.__file__).parent / "py.typed").exists()


@pytest.mark.parametrize("name", ["RESERVED_METADATA", "KeyUsageError", "check_metadata",
                                  "looks_like_secret", "merged", "refuse_secret", "safe_id",
                                  "since_days"])
def test_names_moved_to_guards_still_import_from_lifecycle(name: str) -> None:
    """lifecycle.py was split (envroute.guards); code that imported from it still works."""
    from envroute import guards, lifecycle

    assert getattr(lifecycle, name) is getattr(guards, name)
