"""``envroute demo`` as a new user runs it: start it, paste its curl lines, press Ctrl-C."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time

import pytest
import requests

from tests.support.processes import BIN, free_port, wait_for_port

pytestmark = pytest.mark.slow


def read_banner(process: subprocess.Popen[str]) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "Ctrl-C stops the demo" in line:
            return lines
    raise AssertionError("the demo did not print its banner:\n" + "\n".join(lines))


def curl(line: str) -> requests.Response:
    """Run one of the banner's curl lines with requests (the same request, no shell)."""
    words = shlex.split(line)
    assert words[:2] == ["curl", "-s"]
    url, headers, auth = words[2], {}, None
    rest = iter(words[3:])
    for word in rest:
        if word == "-H":
            name, _, value = next(rest).partition(": ")
            headers[name] = value
        elif word == "-u":
            user = next(rest)
            auth = (user.rstrip(":"), "")
    return requests.get(url, headers=headers, auth=auth, timeout=10)


def test_demo_prints_curl_lines_that_work_and_stops_on_ctrl_c() -> None:
    port = free_port()
    process = subprocess.Popen([str(BIN / "envroute"), "demo", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = read_banner(process)
        wait_for_port(port)
        curls = [line.strip() for line in banner if line.strip().startswith("curl ")]
        assert len(curls) == 4
        sandbox, live, bad, missing = (curl(line) for line in curls)
        assert sandbox.status_code == 200 and sandbox.json()["livemode"] is False
        assert live.status_code == 200 and live.json()["livemode"] is True
        assert sandbox.json()["data"] != live.json()["data"]
        assert "Envroute" not in " ".join(live.headers)  # nothing names the backend
        assert bad.status_code == 401 and bad.json()["code"] == "invalid_key"
        assert missing.status_code == 401 and missing.json()["code"] == "missing_credentials"
        assert re.search(r"sk_test_\w{38}", "\n".join(banner))
        move = next(line.strip() for line in banner if "customers update acme" in line)
        moved = subprocess.run(shlex.split(move), capture_output=True, text=True, timeout=60)
        assert moved.returncode == 0, moved.stderr
        deadline = time.monotonic() + 20  # within ~1 s; generous under load
        while curl(curls[1]).json()["served_by"] == "production":
            assert time.monotonic() < deadline, "the customer was not moved"
            time.sleep(0.1)
        assert curl(curls[1]).json()["served_by"] == "production, dedicated to acme"
        assert curl(curls[0]).json()["livemode"] is False  # its test key: still the sandbox
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)
        assert process.returncode == 0
        assert "envroute demo: stopped." in output


def test_demo_logs_each_request_once() -> None:
    """The gateway's access line on stderr, once (a root handler printed it twice)."""
    port = free_port()
    process = subprocess.Popen([str(BIN / "envroute"), "demo", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read_banner(process)
        wait_for_port(port)
        answer = requests.get(f"http://127.0.0.1:{port}/v1/charges", timeout=10)
        assert answer.status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=15)
    lines = [line for line in errors.splitlines() if answer.headers["Request-Id"] in line]
    assert len(lines) == 1, errors
    assert "code=missing_credentials" in lines[0]
