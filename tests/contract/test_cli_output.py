"""§10's human output through the console script: one row per record whatever was typed
into a name or ``--actor``, ``explain``'s lines as a reader parses them, and a pipe closed
by its reader (``| head``) stopping the command quietly."""

from __future__ import annotations

from .conftest import Cli


def test_explain_parts_a_backend_from_label_from_the_backend(cli: Cli) -> None:
    (cli.cwd / "envroute.toml").write_text((cli.cwd / "envroute.toml").read_text() + """
[[routes]]
when = {environment = "production"}
backend_from = "backend"
""")
    cli.run("backends", "add", "dedicated-1", "--url", "http://127.0.0.1:9")
    cli.run("customers", "create", "acme", "--meta", "backend=dedicated-1")
    key = cli.json("keys", "create", "--environment", "production", "--customer", "acme")
    lines = cli.run("explain", key["key"], "GET", "/v1/charges").stdout.splitlines()
    assert lines[-1].split()[:3] == ["from", "backend", "dedicated-1"], lines
