"""Import strings: the current directory on the path, factories, one-line failures."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import pytest

from envroute import ConfigError
from envroute.imports import import_object

MODULE = '''
def app(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]

class Holder:
    inner = app

def create_app():
    return app

def broken_factory():
    raise RuntimeError("no database\\nsecond line")
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module in a fresh current directory that is not on sys.path."""
    name = f"proj_{secrets.token_hex(4)}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    (tmp_path / f"{name}_syntax.py").write_text("def oops(:\n")
    (tmp_path / f"{name}_raises.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


@pytest.mark.parametrize("suffix", [":app", ":Holder.inner", ":create_app()"])
def test_found_from_the_current_directory(project: str, suffix: str) -> None:
    target: Any = import_object(project + suffix)
    assert callable(target) and target.__name__ == "app"


@pytest.mark.parametrize(("suffix", "cause"), [
    pytest.param("_missing:app", "ModuleNotFoundError: No module named", id="no-module"),
    pytest.param("_syntax:oops", "SyntaxError", id="syntax-error"),
    pytest.param("_raises:app", "ImportError: needs libfoo", id="module-raises"),
    pytest.param(":nope", "has no attribute 'nope'", id="no-attribute"),
    pytest.param(":broken_factory()", "broken_factory() raised RuntimeError: no database",
                 id="factory-raises"),
    pytest.param("", "expected 'package.module:attribute'", id="no-colon"),
])
def test_failures_are_one_line_naming_the_string(project: str, suffix: str,
                                                 cause: str) -> None:
    with pytest.raises(ConfigError) as caught:
        import_object(project + suffix, what="hook", key="events.hooks[0]",
                      source="envroute.toml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"envroute.toml: events.hooks[0]: cannot import hook "
                              f"{project + suffix!r}: ")
    assert cause in message
    assert caught.value.__cause__ is None  # no chained traceback to print
