"""§9 and §17 through ``envroute check``: every error that would stop start-up, or the first
command that changes something, fails it with one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.apps import SECRET

from .conftest import Cli

HEAD = f'secret = "{SECRET}"\n'


@pytest.mark.parametrize(("body", "status", "names"), [
    pytest.param("", 0, "", id="minimal"),
    pytest.param("bogus = 1\n", 1, "bogus", id="unknown-key"),
    pytest.param('[[routes]]\nwhen = {environment = "moon"}\nbackend = "app"\n', 1,
                 "routes[0].when.environment", id="unknown-environment"),
    pytest.param('[[routes]]\nwhen = {}\nbackend = "ghost"\n', 1, "routes[0].backend",
                 id="undefined-backend"),
    pytest.param('[backends.b]\nurl = "htp://x"\n', 1, "backends.b.url", id="bad-url"),
    pytest.param('[[rate_limits.rules]]\nlimit = "lots"\nper = "key"\n', 1,
                 "rate_limits.rules[0].limit", id="bad-limit"),
    pytest.param('[[rate_limits.rules]]\nlimit = "1/second"\nper = ""\n', 1,
                 "rate_limits.rules[0].per", id="empty-per"),
    pytest.param('[jwt]\nalgorithms = ["none"]\nsecret = "x"\n'
                 'environment_claim = "env"\n', 1, "jwt.algorithms", id="alg-none"),
    pytest.param('[health]\npath = "healthz"\n', 1, "health.path", id="health-path"),
    pytest.param('[logging]\nformat = "xml"\n', 1, "logging.format", id="log-format"),
    pytest.param('[environments.sandbox]\n[environments.staging]\nprefix = "sk_test_"\n',
                 1, "environments.staging.prefix", id="shared-prefix"),
    pytest.param('[events]\nhooks = ["no_such_module_here:hook"]\n', 1,
                 "events.hooks[0]", id="hook-import"),
    pytest.param('[[routes]]\nwhen = {}\nrequest = {method = "GE T"}\nbackend = "app"\n', 1,
                 "routes[0].request.method", id="bad-method"),
    pytest.param('[jwt]\nalgorithms = ["RS256"]\njwks_url = "https://idp/jwks"\n'
                 'metadata_claims = ["environment"]\n', 1, "jwt.metadata_claims",
                 id="reserved-metadata-claim"),
    pytest.param('[jwt]\nalgorithms = ["RS256"]\njwks_url = "https://idp/jwks"\n'
                 'environment_claim = ""\n', 1, "jwt.environment_claim",
                 id="empty-environment-claim"),
    pytest.param('[backends.b]\nurl = "http://127.0.0.1:9"\ntimeout = "0s"\n', 1,
                 "backends.b.timeout", id="zero-timeout"),
    pytest.param('[backends.b]\nurl = "http://127.0.0.1:9"\nconnect_timeout = 0\n', 1,
                 "backends.b.connect_timeout", id="zero-connect-timeout"),
])
def test_check(tmp_path: Path, body: str, status: int, names: str) -> None:
    (tmp_path / "envroute.toml").write_text(HEAD + body)
    result = Cli(tmp_path).run("check", "--app", "envroute.demo_apps:sandbox_app",
                               status=status)
    assert "Traceback" not in result.stderr
    if status:
        assert len(result.stderr.strip().splitlines()) == 1
        assert names in result.stdout + result.stderr


def test_strict_makes_lints_fail(tmp_path: Path) -> None:
    (tmp_path / "envroute.toml").write_text(
        HEAD + '[[routes]]\nwhen = {}\nbackend = "app"\n'
        '[[routes]]\nwhen = {environment = "sandbox"}\nbackend = "app"\n')
    cli = Cli(tmp_path)
    assert "warn" in cli.run("check", "--app", "envroute.demo_apps:sandbox_app").stdout
    cli.run("check", "--strict", "--app", "envroute.demo_apps:sandbox_app", status=1)


def test_keys_under_a_previous_secret_are_a_lint(tmp_path: Path) -> None:
    """§3 and §17: check reports how many keys still need a previous secret, as a lint
    (a warning: exit 0; --strict: exit 1)."""
    (tmp_path / "envroute.toml").write_text(HEAD)
    cli = Cli(tmp_path)
    cli.run("keys", "create", "--environment", "sandbox")
    new = "n" * 40
    (tmp_path / "envroute.toml").write_text(
        f'secret = "{new}"\nprevious_secrets = ["{SECRET}"]\n')
    result = cli.run("check")
    assert "warn  1 key secret still under a previous secret" in result.stdout
    assert cli.run("check", "--strict", status=1).stderr.count("\n") == 1


@pytest.mark.parametrize("app", [
    pytest.param("envroute:__version__", id="not-callable"),
    pytest.param("no_such_module_here:app", id="missing-module"),
    pytest.param("envroute.demo_apps", id="no-attribute-named"),
])
@pytest.mark.parametrize("command", ["check", "serve"])
def test_an_app_that_is_no_wsgi_app_is_one_line(tmp_path: Path, app: str, command: str
                                                ) -> None:
    """§9: an import that fails (or names no WSGI app) is one line naming the string."""
    (tmp_path / "envroute.toml").write_text(HEAD + '[[routes]]\nwhen = {}\nbackend = "app"\n')
    result = Cli(tmp_path).run(command, "--app", app, status=1)
    assert result.stderr.count("\n") == 1 and repr(app) in result.stderr
