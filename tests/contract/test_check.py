"""§9 and §17 through ``envroute check``: every error that would stop start-up, or the first
command that changes something, fails it with one line naming the file and the key."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.support.apps import SECRET
from tests.support.processes import free_port, running
from tests.support.services import require_redis

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


def test_check_says_when_the_wrapped_app_was_not_imported(tmp_path: Path) -> None:
    (tmp_path / "envroute.toml").write_text(
        HEAD + '[[routes]]\nwhen = {}\nbackend = "app"\n')
    without = Cli(tmp_path).run("check").stdout
    assert "backend app: the wrapped app, not imported (--app" in without
    given = Cli(tmp_path).run("check", "--app", "envroute.demo_apps:sandbox_app").stdout
    assert "backend app: in-process app, imported" in given


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


# -- what requests depend on beyond the store and backends ---------------------------------


def rate_limits(storage: str) -> str:
    return (f'[rate_limits]\nstorage = "{storage}"\n'
            '[[rate_limits.rules]]\nlimit = "100/second"\nper = "key"\n')


def test_check_reaches_the_redis_rate_limit_storage(tmp_path: Path) -> None:
    """With Redis down every request under a rule gets a 503: check counts once in it."""
    (tmp_path / "envroute.toml").write_text(HEAD + rate_limits(require_redis()))
    result = Cli(tmp_path).run("check")
    assert "ok    rate limits: redis://" in result.stdout
    assert "/0: reached, the rate-limit script ran in" in result.stdout


@pytest.mark.parametrize("flags", [pytest.param([], id="text"),
                                   pytest.param(["--json"], id="json")])
def test_a_redis_storage_that_is_down_fails_check(tmp_path: Path, flags: list[str]) -> None:
    port = free_port()
    (tmp_path / "envroute.toml").write_text(
        HEAD + rate_limits(f"redis://:hunter2@127.0.0.1:{port}/0"))
    result = Cli(tmp_path).run("check", *flags, status=1)
    assert result.stderr == "envroute: error: 1 check(s) failed: rate limits\n"
    assert "hunter2" not in result.stdout + result.stderr
    if flags:
        failed = [c for c in json.loads(result.stdout)["checks"] if not c["ok"]]
        assert [c["name"] for c in failed] == ["rate limits"]
        assert "Connection refused" in failed[0]["detail"]
    else:
        assert (f"FAIL  rate limits: redis://:***@127.0.0.1:{port}/0: ConnectionError: "
                in result.stdout) and "Connection refused" in result.stdout


@functools.cache
def public_jwk(algorithm: str, kid: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private: Any = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                    if algorithm == "RS256" else ec.generate_private_key(ec.SECP256R1()))
    data: dict[str, Any] = json.loads(
        jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(private.public_key()))
    return {**data, "kid": kid, "alg": algorithm, "use": "sig"}


def key_set(*algorithms: str) -> str:
    return json.dumps({"keys": [public_jwk(a, f"k{i}") for i, a in enumerate(algorithms)]})


@dataclass
class JwksServer:
    file: Path
    url: str


@pytest.fixture
def jwks(tmp_path: Path) -> Iterator[JwksServer]:
    """A real JWKS endpoint: serves ``file`` as it is, 404 while it does not exist."""
    port = free_port()
    server = JwksServer(tmp_path / "served" / "jwks.json",
                        f"http://127.0.0.1:{port}/.well-known/jwks.json")
    server.file.parent.mkdir()
    command = [sys.executable, "-m", "tests.policies.jwks_server", str(server.file),
               str(tmp_path / "served" / "fetches.txt"), str(port)]
    with running(command, port=port, cwd=Path(__file__).parents[2]):
        yield server


@pytest.mark.parametrize(("served", "algorithms", "status", "line"), [
    pytest.param(lambda: key_set("RS256", "ES256"), '["RS256", "ES256"]', 0,
                 "ok    jwt: {url}: 2 signing keys (ES256, RS256)\n", id="key-set"),
    pytest.param(lambda: key_set("RS256", "ES256"), '["ES256"]', 0,
                 "ok    jwt: {url}: 2 signing keys (ES256, RS256), 1 for the configured "
                 "algorithms\n", id="some-keys-for-the-algorithms"),
    pytest.param(lambda: key_set("RS256"), '["ES256"]', 1,
                 "FAIL  jwt: {url}: 1 signing key (RS256), none for the configured "
                 "algorithms (ES256): every token would be refused\n",
                 id="no-key-for-the-algorithms"),
    pytest.param(None, '["RS256"]', 1, "FAIL  jwt: {url}: cannot be fetched: HTTP 404 "
                 "Not Found\n", id="404"),
    pytest.param(lambda: "<html><body>Bad Gateway</body></html>", '["RS256"]', 1,
                 "FAIL  jwt: {url}: not a key set: the answer is not JSON", id="html"),
    pytest.param(lambda: '{"issuer": "https://idp.example/"}', '["RS256"]', 1,
                 "FAIL  jwt: {url}: not a key set: ", id="json-of-another-shape"),
    pytest.param(lambda: json.dumps({"keys": [{"kty": "RSA", "kid": "x"}]}), '["RS256"]', 1,
                 "FAIL  jwt: {url}: not a key set: ", id="no-usable-key"),
])
def test_check_fetches_the_jwks(tmp_path: Path, jwks: JwksServer,
                                served: Callable[[], str] | None, algorithms: str,
                                status: int, line: str) -> None:
    """A JWKS that cannot be fetched, is no key set or has no key for the algorithms
    refuses every token: check names it and the cause, never the URL's token."""
    if served is not None:
        jwks.file.write_text(served())
    (tmp_path / "envroute.toml").write_text(
        HEAD + f'[jwt]\nalgorithms = {algorithms}\n'
        f'jwks_url = "{jwks.url}?access_token=tok-SECRET-123"\n')
    result = Cli(tmp_path).run("check", status=status)
    assert line.format(url=jwks.url) in result.stdout
    assert "tok-SECRET" not in result.stdout + result.stderr
    assert result.stderr == ("envroute: error: 1 check(s) failed: jwt\n" if status else "")


def test_a_jwks_url_nothing_listens_on_fails_check(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    (tmp_path / "envroute.toml").write_text(
        HEAD + f'[jwt]\nalgorithms = ["RS256"]\njwks_url = "{url}"\n')
    result = Cli(tmp_path).run("check", status=1)
    assert f"FAIL  jwt: {url}: cannot be fetched: Connection refused\n" in result.stdout
    assert result.stderr == "envroute: error: 1 check(s) failed: jwt\n"
