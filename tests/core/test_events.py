"""``[events] hooks``: called after each stored change, in the process that made it; a hook
that raises is logged and never undoes the change; one that cannot be imported stops the
command before anything changes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envroute import EnvRouter, Event
from envroute.audit import add_listener, remove_listener
from envroute.commandtools import Managers
from tests.support.apps import SECRET, text_app
from tests.support.processes import BIN

HOOKS = """
import json

def record(event):
    with open("events.jsonl", "a") as handle:
        handle.write(json.dumps(event.as_dict()) + "\\n")

def broken(event):
    raise RuntimeError("the pager is down")
"""


def run(cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(BIN / "envroute"), *args], cwd=cwd, capture_output=True,
                            text=True, timeout=60, env=os.environ.copy())
    assert result.returncode == code, (result.stdout, result.stderr)
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "project_hooks.py").write_text(HOOKS)
    return tmp_path


def configure(project: Path, hooks: list[str]) -> None:
    (project / "envroute.toml").write_text(
        f'secret = "{SECRET}"\n[store]\nurl = "sqlite:///keys.db"\n'
        f"[events]\nhooks = {json.dumps(hooks)}\n")


def test_hooks_run_after_each_change_and_a_failing_one_is_one_warning(project: Path) -> None:
    configure(project, ["project_hooks:broken", "project_hooks:record"])
    made = run(project, "customers", "create", "acme", "--actor", "alice")
    assert made.stderr.count("\n") == 1 and "Traceback" not in made.stderr
    assert "envroute: error: " not in made.stderr
    assert "project_hooks" in made.stderr and "the pager is down" in made.stderr
    key = json.loads(run(project, "keys", "create", "-e", "sandbox", "--customer", "acme",
                         "--json").stdout)
    events = [json.loads(line) for line in (project / "events.jsonl").read_text().split("\n")
              if line]
    assert [(e["action"], e["target"]) for e in events] == [
        ("customer.created", "acme"), ("key.created", key["id"])]
    assert events[0]["actor"] == "alice" and events[1]["customer_id"] == "acme"
    assert key["key"] not in (project / "events.jsonl").read_text()
    assert [c["id"] for c in json.loads(run(project, "customers", "list", "--json").stdout)
            ] == ["acme"]  # the failing hook undid nothing


def test_a_hook_that_cannot_be_imported_changes_nothing(project: Path) -> None:
    configure(project, ["project_hooks_missing:record"])
    result = run(project, "customers", "create", "acme", code=1)
    assert result.stderr.count("\n") == 1
    assert "events.hooks[0]: cannot import hook 'project_hooks_missing:record'" in result.stderr
    assert json.loads(run(project, "customers", "list", "--json").stdout) == []


@pytest.fixture
def router(store_url: str) -> Iterator[EnvRouter]:
    gateway = EnvRouter(text_app("app"), {"secret": SECRET, "store": {"url": store_url}})
    yield gateway
    gateway.store.close()


def test_python_api_events_carry_the_audit_fields(router: EnvRouter) -> None:
    seen: list[Event] = []
    add_listener(seen.append)
    try:
        managers = Managers.of_router(router, "deploy-bot")
        managers.customers.create("acme", metadata={"tier": "gold"})
        managers.customers.update("acme", set_meta={"backend": "edge"})
        managers.backends.add("edge", "http://127.0.0.1:9")
        issued = managers.keys.create("production", customer_id="acme")
        managers.keys.disable(issued.record.id)
    finally:
        remove_listener(seen.append)
    assert [(e.action, e.actor) for e in seen] == [
        ("customer.created", "deploy-bot"), ("customer.updated", "deploy-bot"),
        ("backend.added", "deploy-bot"), ("key.created", "deploy-bot"),
        ("key.disabled", "deploy-bot")]
    update: Any = seen[1]
    assert update.target == "acme" and update.customer_id == "acme"
    assert update.changes == {"metadata": {"before": {"tier": "gold"},
                                           "after": {"tier": "gold", "backend": "edge"}}}
    assert set(update.as_dict()) == {"at", "actor", "action", "target", "changes",
                                     "customer_id"}
    records = router.store.list_audit()
    assert [r.action for r in records] == [e.action for e in reversed(seen)]
