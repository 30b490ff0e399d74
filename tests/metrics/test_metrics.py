"""The recorder and the metrics endpoint, in process (no server)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from envroute import metrics, metricsdir
from envroute.problems import Problem
from envroute.settings import MetricsSettings

from .support import Samples, delta, parse, value

TOKEN = "scrape-token-0123456789"


@pytest.fixture
def open_endpoint() -> metrics.MetricsEndpoint:
    endpoint = metrics.enable(MetricsSettings(path="/metrics"))
    assert endpoint is not None
    return endpoint


@pytest.fixture
def guarded_endpoint() -> metrics.MetricsEndpoint:
    endpoint = metrics.enable(MetricsSettings(path="/metrics", token=TOKEN))
    assert endpoint is not None
    return endpoint


def scrape(endpoint: metrics.MetricsEndpoint, **headers: str) -> Samples:
    answer = endpoint.answer({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", **headers})
    assert answer.status == 200
    assert dict(answer.headers)["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(answer.body.decode())


def test_off_unless_a_path_is_set() -> None:
    assert metrics.enable(MetricsSettings()) is None


def test_multiprocess_directory_is_set_up(open_endpoint: metrics.MetricsEndpoint) -> None:
    directory = os.environ[metricsdir.ENV_VAR]
    assert directory == os.environ[metricsdir.OWNED_VAR]
    assert os.path.basename(directory) == metricsdir.process_tag(os.getpid())
    assert os.stat(directory).st_mode & 0o077 == 0


def test_counts_are_exact(open_endpoint: metrics.MetricsEndpoint) -> None:
    before = scrape(open_endpoint)
    for status in (200, 201, 503):  # the backend's own 503 is still "ok" for envroute
        metrics.observe_request("sandbox", "app", "ok", 0.003, status)
    metrics.observe_request("production", "billing", "rate_limited", 0.0001, 429)
    metrics.observe_request(None, None, "missing_credentials", 0.00002, 401)
    metrics.observe_upstream("billing", 0.2)
    metrics.auth_cache("hit")
    metrics.auth_cache("hit")
    metrics.auth_cache("miss")
    metrics.store_error()
    changes = delta(before, scrape(open_endpoint))
    assert value(changes, "envroute_requests_total", environment="sandbox", backend="app",
                 code="ok") == 3
    assert value(changes, "envroute_requests_total", environment="production",
                 backend="billing", code="rate_limited") == 1
    assert value(changes, "envroute_requests_total", environment="-", backend="-",
                 code="missing_credentials") == 1
    for environment, backend, status, count in [("sandbox", "app", "2xx", 2),
                                                ("sandbox", "app", "5xx", 1),
                                                ("production", "billing", "4xx", 1),
                                                ("-", "-", "4xx", 1)]:
        assert value(changes, "envroute_responses_total", environment=environment,
                     backend=backend, status=status) == count
    duration = "envroute_request_duration_seconds"
    assert value(changes, f"{duration}_count", environment="sandbox", backend="app") == 3
    assert value(changes, f"{duration}_sum", environment="sandbox",
                 backend="app") == pytest.approx(0.009)
    assert value(changes, f"{duration}_bucket", environment="sandbox", backend="app",
                 le="0.0025") == 0
    assert value(changes, f"{duration}_bucket", environment="sandbox", backend="app",
                 le="0.005") == 3
    assert value(changes, f"{duration}_bucket", environment="sandbox", backend="app",
                 le="+Inf") == 3
    assert value(changes, "envroute_upstream_duration_seconds_count", backend="billing") == 1
    assert value(changes, "envroute_auth_cache_total", result="hit") == 2
    assert value(changes, "envroute_auth_cache_total", result="miss") == 1
    assert value(changes, "envroute_store_errors_total") == 1


def test_no_key_or_customer_label(open_endpoint: metrics.MetricsEndpoint) -> None:
    metrics.observe_request("sandbox", "app", "ok", 0.001)
    names = {label for (_, labels) in scrape(open_endpoint) for label, _ in labels}
    assert names <= {"environment", "backend", "code", "status", "result", "le"}


def test_a_series_flood_is_folded(open_endpoint: metrics.MetricsEndpoint,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = open_endpoint._recorder
    monkeypatch.setattr(metrics, "MAX_SERIES", len(recorder._children))
    before = scrape(open_endpoint)
    for n in range(5):
        metrics.observe_request("sandbox", f"made-up-{n}", "backend_unavailable", 0.001)
    changes = delta(before, scrape(open_endpoint))
    assert value(changes, "envroute_requests_total", environment="other", backend="other",
                 code="other") == 5
    assert value(changes, "envroute_responses_total", environment="other", backend="other",
                 status="other") == 5
    assert not any("made-up" in str(labels) for (_, labels) in changes)
    for key in [k for k in recorder._children if "other" in k]:
        del recorder._children[key]  # later tests count series of their own


@pytest.mark.parametrize(("headers", "status", "code"), [
    pytest.param({}, 401, "missing_credentials", id="none"),
    # §17: "only with Authorization: Bearer <token> ... (otherwise 401 missing_credentials)"
    pytest.param({"HTTP_AUTHORIZATION": f"Bearer {TOKEN}x"}, 401, "missing_credentials",
                 id="another-token"),
    pytest.param({"HTTP_AUTHORIZATION": "Bearer sk_test_abc"}, 401, "missing_credentials",
                 id="an-api-key-as-bearer"),
    pytest.param({"HTTP_X_API_KEY": "sk_test_abc"}, 401, "missing_credentials",
                 id="an-api-key-header"),
    pytest.param({"HTTP_AUTHORIZATION": f"Basic {TOKEN}"}, 401, "missing_credentials",
                 id="basic"),
    pytest.param({"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}, 200, None, id="the-token"),
    pytest.param({"HTTP_AUTHORIZATION": f"bearer  {TOKEN} "}, 200, None,
                 id="scheme-any-case"),
])
def test_token(guarded_endpoint: metrics.MetricsEndpoint, headers: dict[str, str],
               status: int, code: str | None) -> None:
    if code is None:
        assert scrape(guarded_endpoint, **headers)
        return
    with pytest.raises(Problem) as refused:
        guarded_endpoint.answer({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", **headers})
    assert (refused.value.status, refused.value.code) == (status, code)
    assert "envroute_" not in refused.value.detail


@pytest.mark.filterwarnings("ignore:This process:DeprecationWarning")  # fork with threads
def test_counts_of_a_forked_child_are_its_own(open_endpoint: metrics.MetricsEndpoint) -> None:
    """A worker forked after requests were buffered must not write its parent's counts."""
    metrics.observe_request("sandbox", "fork", "ok", 0.001)  # buffered, not yet flushed
    before = scrape(open_endpoint)  # flushes the parent's count
    metrics.observe_request("sandbox", "fork", "ok", 0.001)
    pid = os.fork()
    if pid == 0:  # the child: one request of its own, then exit (atexit does not run)
        metrics.observe_request("sandbox", "fork", "ok", 0.001)
        open_endpoint._recorder.flush()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    changes = delta(before, scrape(open_endpoint))
    assert value(changes, "envroute_requests_total", environment="sandbox", backend="fork",
                 code="ok") == 2


@pytest.mark.parametrize(("code", "expected"), [
    pytest.param("import envroute, envroute.metrics, envroute.gateway, envroute.auth; "
                 "print('prometheus_client' in sys.modules)", "False", id="core-imports-none"),
    pytest.param("sys.modules['prometheus_client'] = None; from envroute import metrics; "
                 "from envroute.settings import MetricsSettings\n"
                 "try: metrics.enable(MetricsSettings(path='/metrics'))\n"
                 "except Exception as exc: print(exc)",
                 "<config>: metrics.path: needs the metrics extra: "
                 "pip install 'envroute[metrics]'", id="extra-missing"),
])
def test_prometheus_client_only_when_enabled(code: str, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != metricsdir.ENV_VAR}
    output = subprocess.run([sys.executable, "-c", f"import sys\n{code}"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert output.strip() == expected
