"""§10's human output through the console script: one row per record whatever was typed
into a name or ``--actor``, ``explain``'s lines as a reader parses them, and a pipe closed
by its reader (``| head``) stopping the command quietly."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import ENVROUTE, Cli

#: A newline, then what would read as an audit record of its own.
FORGED = "ci\n2026-01-01T00:00:00Z  admin  key.revoked  key_forged"


@pytest.mark.parametrize(("args", "listing"), [
    pytest.param(["customers", "create", "acme", "--actor", FORGED], ["audit"], id="actor"),
    pytest.param(["customers", "create", "acme", "--name", FORGED], ["customers", "list"],
                 id="customer-name"),
    pytest.param(["keys", "create", "--environment", "sandbox", "--name", FORGED],
                 ["keys", "list"], id="key-name"),
])
def test_a_newline_typed_into_a_field_cannot_add_a_row(cli: Cli, args: list[str],
                                                       listing: list[str]) -> None:
    cli.run(*args)
    lines = cli.run(*listing).stdout.splitlines()
    assert len(lines) == 2, lines  # the header and the one record
    assert "ci\\x0a2026-01-01" in lines[1]  # shown, escaped, on its own row
    assert not any(line.startswith("2026-01-01") for line in lines)


def test_a_newline_in_a_name_stays_on_the_name_line_of_show(cli: Cli) -> None:
    cli.run("customers", "create", "acme", "--name", FORGED)
    lines = cli.run("customers", "show", "acme").stdout.splitlines()
    assert [line.split()[0] for line in lines[:6]] == [
        "id", "name", "metadata", "status", "created_at", "disabled_at"]


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


def test_a_pipe_closed_by_its_reader_stops_the_command_quietly(cli: Cli) -> None:
    """``envroute audit | head -1``: the reader has what it wanted; no error line."""
    cli.run("customers", "create", "acme")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes anything
    try:
        result = subprocess.run([ENVROUTE, "audit"], cwd=cli.cwd, stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=60,
                                env={**os.environ, "ENVROUTE_CONFIG": "envroute.toml"})
    finally:
        os.close(write)
    assert result.stderr == ""
    assert result.returncode == 1
