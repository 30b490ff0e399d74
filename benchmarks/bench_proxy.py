"""Benchmark envroute's proxy against the backend itself, a naive proxy and nginx.

    .venv/bin/python benchmarks/bench_proxy.py [--duration 5] [--rounds 3] [--mib 200]
    .venv/bin/python benchmarks/bench_proxy.py --callgrind 300 [--only envroute,raw]

In one run, on loopback only, with the same load generator (wrk when installed, else a
Python keep-alive client) for every path:

* ``direct``   the backend (a tiny WSGI app under gunicorn gthread), no proxy;
* ``envroute`` the gateway (``envroute.wsgi:app``, gunicorn gthread): key check, route,
  pooled keep-alive proxy;
* ``raw``      the floor of any Python proxy under the same gunicorn: a kept-alive socket
  per thread, fixed request bytes, the answer read by its ``Content-Length`` (hello only;
  no streaming): what is left is gunicorn's own cost and the kernel's;
* ``naive``    a WSGI proxy calling ``requests.request`` per request (a new session and
  TCP connection each time), streaming both ways, same gunicorn settings;
* ``werkzeug`` werkzeug's ``ProxyMiddleware`` (``http.client``, a connection per request),
  same gunicorn settings: the peer issue 14 sets envroute's proxy CPU against;
* ``nginx``    ``proxy_pass`` with an upstream keep-alive pool, buffering off (when nginx
  is installed).

envroute's access lines are off (``[logging] access = false``), as nginx's ``access_log
off``: no other path writes one (``--access-log`` turns them on).

Reported: requests/s and the ratios to ``naive`` and ``direct``; the proxy's CPU time per
request (user+system of its processes, from /proc); streaming MB/s of a ``--mib`` MiB
download and upload (best of ``--repeat``); and how far the proxy worker's peak RSS rose.
Every server runs for the whole benchmark and the paths are measured in turn,
``--rounds`` times (medians, with the range of the CPU figures): on a shared machine the
load moves between rounds, and taking the paths in turn lets it move every path alike.

``--callgrind N`` counts instructions per request instead (each proxy under ``valgrind
--tool=callgrind``, its worker followed; N requests on one kept-alive connection, less
the start-up): a figure no load can move, though it leaves out the kernel's share.
Targets (reported, not asserted): envroute >= 1.5x naive's req/s, >= 0.8x nginx's
streaming MB/s, memory flat (< 10 MiB growth), proxy CPU per request at most 350 µs and
below werkzeug's (issue 14). ``--only envroute,werkzeug`` measures some paths (direct is
always measured); ``--no-streaming`` skips the transfers.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
MIB = 1 << 20
PIECE = bytes(range(256)) * 1024  # 256 KiB
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


# -- the apps gunicorn serves (imported from this file with --pythonpath) ------------------

def backend_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``/download?N`` streams N MiB; ``/upload`` counts the body; anything else: hello."""
    path = environ.get("PATH_INFO", "")
    if path == "/download":
        size = int(environ.get("QUERY_STRING") or 1) * MIB
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return (PIECE for _ in range(size // len(PIECE)))
    if path == "/upload":
        stream, total = environ["wsgi.input"], 0
        while piece := stream.read(len(PIECE)):
            total += len(piece)
        body = f"{total}\n".encode()
    else:
        body = b"hello from the backend\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def naive_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The proxy one writes first: ``requests.request`` per request, streaming both ways."""
    target = os.environ["BENCH_BACKEND"] + (environ.get("RAW_URI") or environ["PATH_INFO"])
    headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
               if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in HOP_BY_HOP}
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    body: Iterator[bytes] | None = iter(lambda: stream.read(65536), b"") if length or \
        "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "") else None
    response = requests.request(environ["REQUEST_METHOD"], target, headers=headers, data=body,
                                stream=True, allow_redirects=False, timeout=30)
    start_response(f"{response.status_code} {response.reason}",
                   [(k, v) for k, v in response.raw.headers.items()
                    if k.lower() not in HOP_BY_HOP - {"content-length"}])
    return response.raw.stream(65536, decode_content=False)


_raw_local = threading.local()


def raw_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The floor: the least a Python proxy under the same gunicorn can cost. One kept-alive
    socket per thread, the request's bytes fixed, the answer read by its Content-Length;
    no header, path or body is passed on and nothing is checked (never use it)."""
    sock = getattr(_raw_local, "sock", None)
    if sock is None:
        sock = _raw_local.sock = _raw_connect()
    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: backend\r\n\r\n")
    data = b""
    while True:
        piece = sock.recv(65536)
        if not piece:  # the backend closed the idle connection: once more on a new one
            sock.close()
            sock = _raw_local.sock = _raw_connect()
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: backend\r\n\r\n")
            data = b""
            continue
        data += piece
        head, found, body = data.partition(b"\r\n\r\n")
        if found:
            length = int(head.lower().partition(b"content-length:")[2].split(b"\r\n")[0])
            if len(body) >= length:
                break
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _raw_connect() -> socket.socket:
    port = int(os.environ["BENCH_BACKEND"].rpartition(":")[2])
    return socket.create_connection(("127.0.0.1", port))


_werkzeug_proxy: Callable[..., Iterable[bytes]] | None = None


def werkzeug_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """werkzeug's ``ProxyMiddleware`` in front of the backend (mounted under ``/p``, since
    it matches prefixes that end in ``/``)."""
    global _werkzeug_proxy
    if _werkzeug_proxy is None:
        from werkzeug.middleware.http_proxy import ProxyMiddleware
        _werkzeug_proxy = ProxyMiddleware(lambda e, s: [], {"/p": {
            "target": os.environ["BENCH_BACKEND"] + "/", "remove_prefix": True}})
    environ["PATH_INFO"] = "/p" + environ.get("PATH_INFO", "")
    return _werkzeug_proxy(environ, start_response)


# -- processes ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    workers: Callable[[], list[int]] = field(default=lambda: [])

    def pids(self) -> list[int]:
        return [self.process.pid, *self.workers()]


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@contextlib.contextmanager
def serve(name: str, command: list[str], port: int, log: Path,
          env: dict[str, str] | None = None, *, patience: float = 20) -> Iterator[Server]:
    """The server, listening (``patience`` seconds to start, and as many to stop)."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, port, process, lambda: children(process.pid))
    try:
        deadline = time.monotonic() + patience
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not listen on {port}")
            time.sleep(0.05)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(patience)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def gunicorn(app: str, port: int, threads: int) -> list[str]:
    return [str(BIN / "gunicorn"), app, "--pythonpath", str(HERE), "--bind",
            f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread",
            "--threads", str(threads), "--log-level", "warning", "--timeout", "120"]


NGINX_CONF = """
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/f; uwsgi_temp_path {dir}/u; scgi_temp_path {dir}/s;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 0;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_buffer_size 64k;
      proxy_buffers 8 64k;
      proxy_busy_buffers_size 128k;
      proxy_request_buffering off;
    }}
  }}
}}
"""


# -- measuring ----------------------------------------------------------------------------

def cpu_seconds(pids: Iterable[int]) -> float:
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def status_bytes(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def wrk(url: str, headers: dict[str, str], duration: float, connections: int) -> int:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed responses")
    assert total, output
    return int(total.group(1))


def python_load(url: str, headers: dict[str, str], duration: float, connections: int) -> int:
    """Fallback load generator: ``connections`` threads, each one keep-alive connection."""
    parts = urlsplit(url)
    count, lock, stop = [0], threading.Lock(), time.monotonic() + duration

    def worker() -> None:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        done = 0
        while time.monotonic() < stop:
            connection.request("GET", parts.path, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}: {response.status}")
            done += 1
        connection.close()
        with lock:
            count[0] += done

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count[0]


def transfer(url: str, headers: dict[str, str], mib: int, *, upload: bool) -> float:
    """Seconds to download or upload (Content-Length) ``mib`` MiB through ``url``."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    started = time.perf_counter()
    if upload:
        connection.putrequest("POST", "/upload")
        for name, value in {**headers, "Content-Length": str(mib * MIB)}.items():
            connection.putheader(name, value)
        connection.endheaders()
        for _ in range(mib * MIB // len(PIECE)):
            connection.send(PIECE)
        response = connection.getresponse()
        assert int(response.read()) == mib * MIB
    else:
        connection.request("GET", f"/download?{mib}", headers=headers)
        response = connection.getresponse()
        size = 0
        while piece := response.read(MIB):
            size += len(piece)
        assert size == mib * MIB, size
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def peak_growth(pids: list[int], action: Callable[[], float]) -> tuple[float, int]:
    """``action()``'s result, and the largest rise of a process's peak RSS during it."""
    before = {}
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            before[pid] = status_bytes(pid, "VmRSS")
        except OSError:
            before[pid] = status_bytes(pid, "VmHWM")
    result = action()
    return result, max(status_bytes(pid, "VmHWM") - before[pid] for pid in pids)


@dataclass
class Result:
    name: str
    rounds: list[tuple[float, float]] = field(default_factory=list)  # (req/s, µs) each
    down_mbs: float = 0.0
    up_mbs: float = 0.0
    down_rss: int = 0
    up_rss: int = 0

    @property
    def rps(self) -> float:
        return statistics.median(rps for rps, _ in self.rounds)

    @property
    def cpu_us(self) -> float:
        return statistics.median(cpu for _, cpu in self.rounds)

    def cpu_range(self) -> str:
        cpus = [cpu for _, cpu in self.rounds]
        return f"{min(cpus):.0f}-{max(cpus):.0f}" if len(cpus) > 1 else ""


@dataclass
class Measured:
    """One measured path: its server, the headers its requests carry, its processes."""

    server: Server
    headers: dict[str, str]
    pids: Callable[[], list[int]]
    streaming: bool = True


def measure_hello(path: Measured, args: argparse.Namespace, load: Callable[..., int]
                  ) -> tuple[float, float]:
    """req/s of ``/hello`` and the proxy's CPU µs per request, over ``--duration``."""
    url = f"http://127.0.0.1:{path.server.port}/hello"
    cpu = cpu_seconds(path.pids())
    requests_done = load(url, path.headers, args.duration, args.connections)
    used = cpu_seconds(path.pids()) - cpu
    return requests_done / args.duration, used / requests_done * 1e6


def measure_streaming(path: Measured, result: Result, args: argparse.Namespace) -> None:
    base = f"http://127.0.0.1:{path.server.port}"
    transfer(base, path.headers, 4, upload=False)
    transfer(base, path.headers, 4, upload=True)
    for upload in (False, True):  # best of --repeat: one 200 MiB transfer is noisy
        runs = [peak_growth(path.pids(), lambda: transfer(base, path.headers, args.mib,
                                                          upload=upload))  # noqa: B023
                for _ in range(args.repeat)]
        mbs = args.mib * MIB / min(seconds for seconds, _ in runs) / 1e6
        growth = max(rise for _, rise in runs)
        if upload:
            result.up_mbs, result.up_rss = mbs, growth
        else:
            result.down_mbs, result.down_rss = mbs, growth


def make_key(config: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from envroute import KeyManager
    from envroute.gateway import load_settings
    from envroute.stores import open_store

    settings = load_settings(config)
    store = open_store(settings.store_url)
    try:
        return KeyManager(store, settings).create("sandbox").secret
    finally:
        store.close()


def report(results: list[Result], args: argparse.Namespace, generator: str,
           loads: tuple[float, ...]) -> None:
    by = {r.name: r for r in results}
    print(f"\nload: {generator}, {args.connections} connections, {args.duration:g} s per path "
          f"and round, {args.rounds} rounds (paths in turn; medians, CPU range beside); "
          f"streaming: {args.mib} MiB, best of {args.repeat}; "
          f"gunicorn gthread, 1 worker, {args.threads} threads; envroute's access lines "
          f"{'on' if args.access_log else 'off (as nginx: access_log off)'}; "
          f"machine: {os.cpu_count()} cores, load average {loads[0]:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"{'path':<10}{'req/s':>9}{'vs naive':>10}{'vs direct':>10}{'proxy CPU':>12}"
          f"{'range':>10}{'down MB/s':>11}{'up MB/s':>9}{'RSS+ down':>11}{'RSS+ up':>9}")
    for r in results:
        naive = by.get("naive")
        vs_naive = f"{r.rps / naive.rps:.2f}x" if naive and naive.rps else "-"
        cpu = f"{r.cpu_us:.0f} µs" if r.name != "direct" else f"({r.cpu_us:.0f} µs)"
        print(f"{r.name:<10}{r.rps:>9.0f}{vs_naive:>10}{r.rps / by['direct'].rps:>9.2f}x"
              f"{cpu:>12}{r.cpu_range():>10}{r.down_mbs:>11.0f}{r.up_mbs:>9.0f}"
              f"{r.down_rss / MIB:>9.1f}Mi{r.up_rss / MIB:>7.1f}Mi")
    print("(proxy CPU: user+system time of the proxy's processes per request; for direct, the "
          "backend's own)")
    envroute, naive, nginx = by.get("envroute"), by.get("naive"), by.get("nginx")
    werkzeug = by.get("werkzeug")
    if envroute:
        print(f"target envroute proxy CPU <= 350 µs:       {envroute.cpu_us:.0f} µs  "
              f"{'met' if envroute.cpu_us <= 350 else 'NOT met'}")
    raw = by.get("raw")
    if envroute and raw:
        print(f"envroute above the raw floor (gunicorn's own cost): "
              f"{envroute.cpu_us - raw.cpu_us:+.0f} µs per request")
    if envroute and werkzeug:
        print(f"target envroute CPU below werkzeug's:       {envroute.cpu_us:.0f} vs "
              f"{werkzeug.cpu_us:.0f} µs  "
              f"{'met' if envroute.cpu_us < werkzeug.cpu_us else 'NOT met'}")
    if envroute and naive:
        ratio = envroute.rps / naive.rps
        print(f"target envroute >= 1.5x naive req/s:        {ratio:.2f}x  "
              f"{'met' if ratio >= 1.5 else 'NOT met'}")
    if envroute and nginx and not args.no_streaming:
        for label, ours, theirs in (("download", envroute.down_mbs, nginx.down_mbs),
                                    ("upload", envroute.up_mbs, nginx.up_mbs)):
            ratio = ours / theirs
            print(f"target envroute >= 0.8x nginx {label} MB/s: {ratio:.2f}x  "
                  f"{'met' if ratio >= 0.8 else 'NOT met'}")
    if envroute and not args.no_streaming:
        growth = max(envroute.down_rss, envroute.up_rss) / MIB
        print(f"target flat memory (< 10 MiB peak growth): {growth:.1f} MiB  "
              f"{'met' if growth < 10 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per path")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per server")
    parser.add_argument("--mib", type=int, default=200, help="streamed body size")
    parser.add_argument("--repeat", type=int, default=3,
                        help="transfers per direction (best MB/s, largest RSS rise)")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--no-streaming", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated paths to measure")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measurements of each path, taken in turn (medians reported)")
    parser.add_argument("--callgrind", type=int, default=0, metavar="N",
                        help="count instructions per request instead (N requests, each "
                             "proxy under valgrind --tool=callgrind, its workers followed)")
    parser.add_argument("--access-log", action="store_true",
                        help="envroute writes its access lines (to the log file; off by "
                             "default, as nginx's access_log off: no peer writes one)")
    args = parser.parse_args()
    wanted = set(filter(None, args.only.split(","))) or {"envroute", "raw", "naive",
                                                          "werkzeug", "nginx"}
    load = wrk if shutil.which("wrk") else python_load
    generator = "wrk" if load is wrk else "python keep-alive client (wrk not installed)"
    loads = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        backend_port = free_port()
        backend = stack.enter_context(serve(
            "direct", gunicorn("bench_proxy:backend_app", backend_port, args.threads),
            backend_port, work / "backend.log"))
        backend_url = f"http://127.0.0.1:{backend_port}"
        config = work / "envroute.toml"
        config.write_text(f'secret = "{SECRET}"\n[store]\nurl = "sqlite:///{work}/keys.db"\n'
                          f'[backends.api]\nurl = "{backend_url}"\n'
                          f'pool_size = {args.threads}\n'
                          f'[logging]\naccess = {"true" if args.access_log else "false"}\n'
                          # under valgrind 5 s is a few dozen requests: a verified key is
                          # kept for the whole count, as in the timed runs (a miss per 5 s)
                          + ('[auth]\ncache_ttl = "1h"\n' if args.callgrind else ""))
        key = make_key(config)
        if args.callgrind:
            count_instructions(args, wanted, work, config, key, backend_port)
            return
        paths = [Measured(backend, {}, workers(backend))]
        for proxy in proxies(args, wanted, work, config, key, backend_port):
            server = stack.enter_context(serve(proxy.name, proxy.command, proxy.port,
                                               work / f"{proxy.name}.log", proxy.env))
            paths.append(Measured(server, proxy.headers, workers(server),
                                  streaming=proxy.name != "raw"))
        results = [Result(path.server.name) for path in paths]
        for path in paths:  # warm up: pools, caches, keys
            load(f"http://127.0.0.1:{path.server.port}/hello", path.headers, 1,
                 args.connections)
        for round_ in range(args.rounds):  # the paths in turn, so that drift hits all alike
            for path, result in zip(paths, results, strict=True):
                print(f"round {round_ + 1}: measuring {path.server.name} ...", flush=True)
                result.rounds.append(measure_hello(path, args, load))
        if not args.no_streaming:
            for path, result in zip(paths, results, strict=True):
                if path.streaming:
                    print(f"streaming through {path.server.name} ...", flush=True)
                    measure_streaming(path, result, args)
    report(results, args, generator, loads)


def workers(server: Server) -> Callable[[], list[int]]:
    """The processes whose CPU is counted: gunicorn's workers, nginx's master and workers."""
    if server.name == "nginx":
        return lambda: [server.process.pid, *children(server.process.pid)]
    return lambda: children(server.process.pid)


def fixed_load(url: str, headers: dict[str, str], count: int, connections: int) -> None:
    """``count`` requests (200 each), spread over ``connections`` kept-alive connections."""
    parts = urlsplit(url)
    failures: list[str] = []

    def worker(share: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=600)
        for _ in range(share):
            connection.request("GET", parts.path, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"{url}: {response.status}")
        connection.close()

    threads = [threading.Thread(target=worker, args=(count // connections
                                                     + (i < count % connections),))
               for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(failures[0])


def count_instructions(args: argparse.Namespace, wanted: set[str], work: Path, config: Path,
                       key: str, backend_port: int) -> None:
    """Instructions per request in each proxy's processes, counted by callgrind: each proxy
    runs twice under valgrind (children followed: gunicorn's worker, nginx's), serving
    :data:`WARM` requests, then ``WARM + --callgrind`` requests; the difference over
    ``--callgrind`` leaves out start-up. The busiest process is the one counted (the
    worker). No load on a shared machine can move these counts; the kernel's share (the
    sockets' system calls) is not in them."""
    counts: dict[str, list[int]] = {}
    for total in (WARM, WARM + args.callgrind):
        for proxy in proxies(args, wanted, work, config, key, backend_port):
            print(f"counting {proxy.name} ({total} requests) ...", flush=True)
            out = work / f"callgrind-{proxy.name}-{total}"
            out.mkdir()
            command = proxy.command if proxy.name == "nginx" else [sys.executable,
                                                                   *proxy.command]
            with serve(proxy.name, ["valgrind", "--tool=callgrind", "--trace-children=yes",
                                    f"--callgrind-out-file={out}/out.%p", *command],
                       proxy.port, work / f"{proxy.name}-callgrind.log",
                       {**proxy.env, "PYTHONHASHSEED": "0"}, patience=600):
                fixed_load(f"http://127.0.0.1:{proxy.port}/hello", proxy.headers, total,
                           1)
            totals = [int(found.group(1)) for path in out.iterdir()
                      if (found := re.search(r"^(?:totals|summary): (\d+)",
                                             path.read_text("latin-1"), re.MULTILINE))]
            counts.setdefault(proxy.name, []).append(max(totals))
            print(f"  {max(totals):,} instructions in the busiest process", flush=True)
    per = {name: (after - before) / args.callgrind for name, (before, after) in counts.items()}
    print(f"\ninstructions per request (callgrind, {args.callgrind} requests after {WARM}, "
          "one kept-alive connection; user space only, the "
          "kernel's share not counted):")
    for name, cost in per.items():
        above = f"{cost - per['raw']:+,.0f} above raw" if "raw" in per and name != "raw" else ""
        print(f"  {name:<10}{cost:>10,.0f}   {above}")


#: Requests served before counting (pools filled, the key verified and cached).
WARM = 100


@dataclass
class Proxy:
    """How to start one proxy to measure, and what its requests carry."""

    name: str
    command: list[str]
    port: int
    env: dict[str, str]
    headers: dict[str, str]


def proxies(args: argparse.Namespace, wanted: set[str], work: Path, config: Path, key: str,
            backend_port: int) -> Iterator[Proxy]:
    """The proxies ``--only`` asks for (all by default), in the report's order."""
    backend_url = f"http://127.0.0.1:{backend_port}"
    if "envroute" in wanted:
        port = free_port()
        yield Proxy("envroute", gunicorn("envroute.wsgi:app", port, args.threads), port,
                    {"ENVROUTE_CONFIG": str(config), "PYTHONPATH": str(ROOT)},
                    {"Authorization": f"Bearer {key}"})
    for name in ("raw", "naive", "werkzeug"):
        if name in wanted:
            port = free_port()
            yield Proxy(name, gunicorn(f"bench_proxy:{name}_app", port, args.threads), port,
                        {"BENCH_BACKEND": backend_url}, {})
    nginx = None if args.no_nginx else shutil.which("nginx")
    if nginx and "nginx" in wanted:
        port = free_port()
        user = "user root root;" if os.geteuid() == 0 else ""
        (work / "nginx.conf").write_text(NGINX_CONF.format(
            dir=work, backend=backend_port, port=port, user=user))
        yield Proxy("nginx", [nginx, "-p", str(work), "-c", str(work / "nginx.conf"),
                              "-g", "daemon off;"], port, {}, {})
    elif "nginx" in wanted:
        print("nginx not installed (apt-get install nginx): skipped", flush=True)


if __name__ == "__main__":
    main()
