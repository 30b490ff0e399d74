"""Instructions per verified request on a cache hit, in process: bare app, envroute, and a
naive key router, counted by callgrind (issue 14).

    .venv/bin/python benchmarks/bench_instructions.py [--requests 5000]

Instruction counts do not depend on what else the machine runs, so they compare runs on a
shared machine where timings cannot. The same script (``--child MODE N``) serves ``N``
requests to one app, with a fresh environ each, under ``valgrind --tool=callgrind``;
it runs twice (``N`` and ``N + --requests``) and the difference over ``--requests`` is
the cost of one request without the interpreter's start-up and the imports.

* ``bare``     the app alone;
* ``envroute`` ``EnvRouter(app)`` with a SQLite store, the key verified once and then
  served from the cache (usage counted per request, as in production);
* ``naive``    a 20-line middleware: ``Bearer`` value -> SHA-256 -> dict -> environ;
* ``floor``    the steps the contract asks of a cached request and nothing else, in one
  flat closure (:func:`floor_router`): what any implementation pays in this harness.

Target (reported, not asserted): envroute at most 25,000 instructions per request.
``--profile`` prints cProfile's view of envroute's request instead (where the cost is).

``--gunicorn`` serves the same three apps under gunicorn (1 worker; sync, then gthread
with 4 threads), in alternating rounds, with wrk (16 connections): req/s as a ratio to
the bare app's, and the server's CPU per request from /proc (target: envroute >= 0.95 of
the bare app's req/s). ``--gunicorn --callgrind`` counts instructions per request in the
sync worker instead (callgrind following gunicorn's fork): a ratio no load on a shared
machine can move, though it leaves out the kernel's share. Access lines are off in every
mode: their cost is the log handler's I/O (stderr under gunicorn), which the deployment
chooses.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SECRET = "benchmark-secret-0123456789abcdefghijklmnop"
WARM = 200
BODY = b'{"object":"list","data":[]}'


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]


def naive_router(app: Callable[..., Iterable[bytes]], keys: dict[str, dict[str, str]]
                 ) -> Callable[..., Iterable[bytes]]:
    """What a hand-written key check costs: no checksum, cache, policy, usage or log."""
    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]
                   ) -> Iterable[bytes]:
        value = environ.get("HTTP_AUTHORIZATION", "")
        digest = hashlib.sha256(value.removeprefix("Bearer ").encode()).hexdigest()
        identity = keys.get(digest)
        if identity is None:
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"unauthorized\n"]
        environ["naive.identity"] = identity
        return app(environ, start_response)
    return middleware


def floor_router(app: Callable[..., Iterable[bytes]], key: str
                 ) -> Callable[..., Iterable[bytes]]:
    """The floor: the steps the contract asks of a cached request, and nothing else, in one
    flat closure (no objects, no policies, no metrics, no failover, no error paths).

    ``Envroute-*`` scan, request id, ``Bearer`` parse, a 128-bit salted cache look-up with
    the cache's and the key's expiry, the credential removed (and ``Referer`` looked at),
    the identity and backend in the environ, the route remembered per identity, the head
    checked and ``Request-Id`` added, the body's chunks checked, the request counted for
    its key, the access logger asked. What envroute costs above this is its structure.
    """
    import collections
    import itertools
    import logging
    import time

    salt = os.urandom(16).hex()
    identity = {"key_id": "key_floor", "environment": "sandbox"}
    entries: collections.OrderedDict[tuple[int, int], Any] = collections.OrderedDict()
    entries[(hash(key), hash(key + salt))] = (time.monotonic() + 3600, identity, float("inf"))
    memo = {id(identity): (identity, ("app",))}
    backends = {"app": app}
    good_status = {"200 OK": 200}
    good_names = {"Content-Type", "Content-Length"}
    counter = itertools.count(os.getpid() << 20, 7)
    usage: collections.deque[tuple[str, bool, float]] = collections.deque()
    access = logging.getLogger("bench.floor.access")
    monotonic, wall = time.monotonic, time.time

    def router(environ: dict[str, Any], start_response: Callable[..., Any]
               ) -> Iterable[bytes]:
        request_id = environ["envroute.request_id"] = \
            "req_0123456789ab" + hex(next(counter) & 0xFFFFFFFFFFFF | 0x1000000000000)[3:]
        if "HTTP_ENVROUTE_" in "".join(environ):
            for name in [k for k in environ if k.startswith("HTTP_ENVROUTE_")]:
                del environ[name]
        value = environ.get("HTTP_AUTHORIZATION")
        assert type(value) is str and value[:7] == "Bearer "
        value = value[7:]
        token = (hash(value), hash(value + salt))
        entry = entries.get(token)
        assert entry is not None and entry[0] > monotonic()
        now = wall()
        assert entry[2] > now
        entries.move_to_end(token)
        found = entry[1]
        environ["envroute.identity"] = found
        del environ["HTTP_AUTHORIZATION"]
        assert "HTTP_REFERER" not in environ and "HTTP_X_API_KEY" not in environ
        name = memo[id(found)][1][0]
        environ["envroute.backend"] = name
        head: list[Any] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            code = good_status[status]
            for header, text in headers:
                assert header in good_names and text.isascii() and text.isprintable()
            head.append((status, [*headers, ("Request-Id", request_id)], code))

        body = backends[name](environ, start)
        assert type(body) is list
        for chunk in body:
            assert type(chunk) is bytes
        status, headers, code = head[0]
        start_response(status, headers)
        usage.append((found["key_id"], code >= 400, now))
        access.isEnabledFor(logging.INFO)
        return body
    return router


def build(mode: str, directory: Path) -> tuple[Callable[..., Iterable[bytes]], str, Any]:
    """The app for ``mode``, the key to send, and what to close at the end."""
    if mode == "bare":
        return bare_app, "sk_test_none", None
    if mode == "floor":
        key = "sk_test_" + "b" * 38
        return floor_router(bare_app, key), key, None
    if mode == "naive":
        key = "sk_test_" + "a" * 38
        digest = hashlib.sha256(key.encode()).hexdigest()
        return naive_router(bare_app, {digest: {"environment": "sandbox"}}), key, None
    from envroute import EnvRouter, KeyManager

    config = directory / "envroute.toml"
    config.write_text(f'secret = "{SECRET}"\n[store]\nurl = "sqlite:///{directory}/bench.db"\n'
                      '[auth]\ncache_ttl = "1h"\n[logging]\naccess = false\n')
    gateway = EnvRouter(bare_app, config)
    key = KeyManager(gateway.store, gateway.settings).create("sandbox").secret
    return gateway, key, gateway


def serve(app: Callable[..., Iterable[bytes]], key: str, count: int) -> None:
    base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/charges", "QUERY_STRING": "",
            "SERVER_NAME": "bench", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "bench",
            "HTTP_ACCEPT": "*/*", "HTTP_USER_AGENT": "bench/1",
            "HTTP_AUTHORIZATION": f"Bearer {key}"}

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        return None

    for _ in range(count):
        body = app(base.copy(), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


def served() -> Callable[..., Iterable[bytes]]:
    """``gunicorn 'bench_instructions:served()'``: the app ``$BENCH_MODE`` names, its key
    written to ``$BENCH_KEY_FILE`` (made once per worker; the store is shared)."""
    directory = Path(os.environ["BENCH_DIR"])
    app, key, _ = build(os.environ["BENCH_MODE"], directory)
    Path(os.environ["BENCH_KEY_FILE"]).write_text(key)
    return app


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(path.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def under_gunicorn(seconds: int, rounds: int) -> None:
    import shutil
    import socket
    import statistics
    import time

    if not shutil.which("wrk"):
        sys.exit("--gunicorn needs wrk (apt-get install wrk)")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        for _ in range(rounds):  # alternate, so drift on a shared machine hits all alike
            for worker in ("sync", "gthread"):
                for mode in ("bare", "naive", "envroute"):
                    with socket.socket() as probe:
                        probe.bind(("127.0.0.1", 0))
                        port = probe.getsockname()[1]
                    directory = Path(tmp) / f"{mode}-{worker}-{port}"
                    directory.mkdir()
                    key_file = directory / "key"
                    command = [str(Path(sys.executable).parent / "gunicorn"),
                               "bench_instructions:served()", "--pythonpath", str(HERE),
                               "--bind", f"127.0.0.1:{port}", "--workers", "1",
                               # (gunicorn runs gthread for "sync" with threads > 1)
                               "--worker-class", worker,
                               "--threads", "4" if worker == "gthread" else "1",
                               "--log-level", "warning"]
                    env = {**os.environ, "BENCH_MODE": mode, "BENCH_DIR": str(directory),
                           "BENCH_KEY_FILE": str(key_file)}
                    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)
                    try:
                        deadline = time.monotonic() + 60
                        while not key_file.exists() or not key_file.read_text():
                            assert time.monotonic() < deadline, f"{mode} did not start"
                            time.sleep(0.1)
                        url = f"http://127.0.0.1:{port}/v1/charges"
                        header = f"Authorization: Bearer {key_file.read_text()}"
                        load = ["wrk", "-t1", "-c16", "-H", header, url]
                        subprocess.run([*load[:1], "-d1s", *load[1:]], check=True,
                                       capture_output=True)
                        before = cpu_seconds(server.pid)
                        output = subprocess.run([*load[:1], f"-d{seconds}s", *load[1:]],
                                                check=True, capture_output=True,
                                                text=True).stdout
                        used = cpu_seconds(server.pid) - before
                    finally:
                        server.terminate()
                        server.wait(30)
                    assert "Non-2xx" not in output, output
                    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
                    assert found, output
                    rps = float(found.group(1))
                    results.setdefault((worker, mode), []).append(
                        (rps, used / (rps * seconds) * 1e6))
    print(f"\ngunicorn, 1 worker (gthread: 4 threads), wrk 16 connections, {seconds} s x "
          f"{rounds} rounds (median); {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}:")
    for worker in ("sync", "gthread"):
        bare = statistics.median(r for r, _ in results[(worker, "bare")])
        for mode in ("bare", "naive", "envroute"):
            rps = statistics.median(r for r, _ in results[(worker, mode)])
            cpu = statistics.median(c for _, c in results[(worker, mode)])
            print(f"  {worker:<8}{mode:<9}{rps:>9.0f} req/s  {rps / bare:>5.2f}x bare  "
                  f"{cpu:>6.0f} µs CPU/request")


def worker_instructions(mode: str, count: int) -> tuple[int, int]:
    """Instructions a gunicorn sync worker ran, start-up included, serving ``count``
    requests one connection each (callgrind follows the fork into the worker): in its
    main thread (which serves the requests), and in all its threads."""
    import glob
    import http.client
    import socket
    import time

    with tempfile.TemporaryDirectory(prefix="callgrind-gunicorn-") as tmp:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        key_file = Path(tmp) / "key"
        env = {**os.environ, "BENCH_MODE": mode, "BENCH_DIR": tmp,
               "BENCH_KEY_FILE": str(key_file), "PYTHONHASHSEED": "0"}
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--trace-children=yes", "--separate-threads=yes",
             f"--callgrind-out-file={tmp}/out.%p", sys.executable,
             str(Path(sys.executable).parent / "gunicorn"), "bench_instructions:served()",
             "--pythonpath", str(HERE), "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--worker-class", "sync", "--timeout", "600", "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 600
            while not key_file.exists() or not key_file.read_text():
                assert time.monotonic() < deadline, f"{mode} did not start under valgrind"
                time.sleep(0.5)
            key = key_file.read_text()
            for _ in range(count):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                connection.request("GET", "/v1/charges",
                                   headers={"Authorization": f"Bearer {key}"})
                response = connection.getresponse()
                response.read()
                assert response.status == 200, response.status
                connection.close()
        finally:
            server.terminate()
            server.wait(300)
        threads: dict[str, dict[str, int]] = {}  # pid -> thread -> instructions
        for path in glob.glob(f"{tmp}/out.*"):
            found = re.search(r"^(?:totals|summary): (\d+)", Path(path).read_text("latin-1"),
                              re.MULTILINE)
            pid, _, thread = Path(path).name.removeprefix("out.").partition("-")
            threads.setdefault(pid, {})[thread] = int(found.group(1)) if found else 0
        # the worker is the process whose first (main) thread ran the most: the requests
        worker = max(threads.values(), key=lambda t: t.get("01", 0))
        return worker.get("01", 0), sum(worker.values())


def under_gunicorn_callgrind(count: int) -> None:
    """Instructions per request in a gunicorn sync worker: a ratio no load can move."""
    main, every = {}, {}
    for mode in ("bare", "naive", "envroute"):
        print(f"counting {mode} under gunicorn ...", flush=True)
        (main_before, every_before) = worker_instructions(mode, 50)
        (main_after, every_after) = worker_instructions(mode, 50 + count)
        main[mode] = (main_after - main_before) / count
        every[mode] = (every_after - every_before) / count
    print(f"\ninstructions per request in a gunicorn sync worker (callgrind, {count} "
          "requests, one connection each; user space only, the kernel's share not counted):")
    print(f"  {'':<9}{'main thread':>12}{'rate':>8}   {'all threads':>12}")
    for mode in main:
        print(f"  {mode:<9}{main[mode]:>12,.0f}{main['bare'] / main[mode]:>7.2f}x   "
              f"{every[mode]:>12,.0f}")
    print("  main thread: the requests' path. All threads adds background ones (the store's "
          "change watcher, the usage flusher), which under valgrind run ~50x as often per "
          "request as they would: the rate is the main thread's.")


def child(mode: str, count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        app, key, gateway = build(mode, Path(tmp))
        serve(app, key, WARM)  # the key verified and cached; lazy starts done
        serve(app, key, count)
        if gateway is not None:
            gateway.authenticator.close()
            gateway.store.close()


def instructions(mode: str, count: int) -> int:
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
             sys.executable, __file__, "--child", mode, str(count)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"})  # same dict layouts every run
    found = re.search(r"Collected : (\d+)", result.stderr)
    assert found, result.stderr[-2000:]
    return int(found.group(1))


def profile(count: int) -> None:
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        app, key, gateway = build("envroute", Path(tmp))
        serve(app, key, WARM)
        profiler = cProfile.Profile()
        profiler.runcall(serve, app, key, count)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
        gateway.authenticator.close()
        gateway.store.close()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--gunicorn", action="store_true")
    parser.add_argument("--callgrind", action="store_true",
                        help="--gunicorn: instructions per request in the worker instead of "
                        "req/s (slow; --requests, default 500 here)")
    parser.add_argument("--seconds", type=int, default=5, help="--gunicorn: load per run")
    parser.add_argument("--rounds", type=int, default=3, help="--gunicorn: rounds")
    args = parser.parse_args()
    if args.gunicorn and args.callgrind:
        under_gunicorn_callgrind(args.requests if args.requests != 5000 else 500)
        return
    if args.gunicorn:
        under_gunicorn(args.seconds, args.rounds)
        return
    if args.profile:
        profile(args.requests)
        return
    costs = {}
    for mode in ("bare", "naive", "floor", "envroute"):
        print(f"counting {mode} ...", flush=True)
        costs[mode] = (instructions(mode, args.requests) - instructions(mode, 0)) \
            / args.requests
    print(f"\ninstructions per request (callgrind, {args.requests} requests, in process):")
    for mode, cost in costs.items():
        extra = "" if mode == "bare" else f"   (+{cost - costs['bare']:,.0f} over bare)"
        print(f"  {mode:<9}{cost:>10,.0f}{extra}")
    met = costs["envroute"] <= 25_000
    print(f"target envroute <= 25,000 per request: {costs['envroute']:,.0f}  "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
