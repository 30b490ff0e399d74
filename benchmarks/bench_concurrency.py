"""Benchmark 256 concurrent clients against a 100 ms upstream: gevent, gthread, nginx.

    .venv/bin/python benchmarks/bench_concurrency.py [--duration 10] [--connections 256]

A gateway's real load is many slow requests at once (issue 14): with an upstream that
answers in ``--delay`` (100 ms), ``--connections`` (256) keep-alive clients can at best do
connections / delay requests per second (the *ceiling*, 2,560). In one run, with wrk as
the load generator for every path:

* ``upstream``  the upstream itself (an asyncio server that answers every request after
  the delay; its own CPU is small), to show the ceiling is reachable on this machine;
* ``gevent``    ``envroute.wsgi:app`` under ``gunicorn -k gevent``, 2 workers (extra
  ``gevent``): key check on the cache, route, pooled keep-alive proxy;
* ``gthread``   the same under ``-k gthread``, 2 workers x ``--threads`` (64);
* ``nginx``     ``proxy_pass`` with an upstream keep-alive pool, 1 worker (when installed).

Reported: req/s and its ratio to the ceiling, errors (non-2xx, socket errors and
timeouts), p50/p99 latency, and the proxy's CPU per request (user+system of its
processes, from /proc). The machine's cores and load average are printed with the
result: the cores are shared with the load generator and the upstream. Targets (reported,
never asserted): gevent >= 0.6 of the ceiling (>= 1,500 req/s on 2 workers) with zero
errors; beyond that nginx's 0.96.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench_proxy import BIN, ROOT, SECRET, Server, children, cpu_seconds, free_port, make_key, serve

NGINX_CONF = """
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/f; uwsgi_temp_path {dir}/u; scgi_temp_path {dir}/s;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 512; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
BODY = b"hello from the slow upstream\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


# -- the upstream: every request answered after the delay, keep-alive, little CPU ---------

class SlowUpstream(asyncio.Protocol):
    delay = 0.1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:  # GETs only: no bodies
            self.buffer = self.buffer[end + 4:]
            loop.call_later(self.delay, self.answer)

    def answer(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(RESPONSE)


def run_upstream(port: int, delay: float) -> None:
    SlowUpstream.delay = delay

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            SlowUpstream, "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    asyncio.run(main())


# -- measuring ----------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    rps: float
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_us: float


def milliseconds(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if found is None:  # wrk prints -nan when nothing completed
        return float("nan")
    number, unit = found.groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]


def wrk(url: str, headers: dict[str, str], duration: float, connections: int
        ) -> tuple[int, int, float, float]:
    """requests, errors, p50 ms, p99 ms."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s",
               "--latency", url]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    total = re.search(r"(\d+) requests in", output)
    assert total, output
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    # the latency distribution's own lines ("  99%  120.00ms"), not a "75.99%" of the
    # thread stats before it
    p50 = re.search(r"^\s*50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s*99%\s+(\S+)", output, re.MULTILINE)
    assert p50 and p99, output
    return int(total.group(1)), errors, milliseconds(p50.group(1)), milliseconds(p99.group(1))


def measure(server: Server, headers: dict[str, str], args: argparse.Namespace) -> Result:
    url = f"http://127.0.0.1:{server.port}/hello"
    wrk(url, headers, 2, args.connections)  # warm up: connections, pools, the key cache
    pids = [server.process.pid, *children(server.process.pid)]
    cpu = cpu_seconds(pids)
    done, errors, p50, p99 = wrk(url, headers, args.duration, args.connections)
    return Result(server.name, done / args.duration, errors, p50, p99,
                  (cpu_seconds(pids) - cpu) / max(done, 1) * 1e6)


def gunicorn(port: int, worker_class: str, workers: int, threads: int) -> list[str]:
    command = [str(BIN / "gunicorn"), "envroute.wsgi:app", "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers), "--worker-class", worker_class,
               "--backlog", "4096", "--log-level", "warning", "--timeout", "120"]
    if worker_class == "gthread":
        command += ["--threads", str(threads)]
    else:
        command += ["--worker-connections", "1000"]
    return command


def report(results: list[Result], args: argparse.Namespace, load: tuple[float, ...]) -> None:
    ceiling = args.connections / args.delay
    print(f"\nmachine: {os.cpu_count()} cores, load average before/after: "
          f"{load[0]:.1f} / {os.getloadavg()[0]:.1f} (shared; client, upstream and proxy on "
          f"the same cores)")
    print(f"wrk: {args.connections} connections, {args.duration:g} s per path; upstream "
          f"answers in {args.delay * 1000:g} ms; ceiling {ceiling:,.0f} req/s; envroute's "
          f"access lines {'on' if args.access_log else 'off (as nginx: access_log off)'}")
    print(f"{'path':<22}{'req/s':>8}{'of ceiling':>12}{'errors':>8}{'p50':>9}{'p99':>9}"
          f"{'CPU/req':>10}")
    for r in results:
        print(f"{r.name:<22}{r.rps:>8.0f}{r.rps / ceiling:>11.2f}x{r.errors:>8}"
              f"{r.p50_ms:>7.0f}ms{r.p99_ms:>7.0f}ms{r.cpu_us:>8.0f}µs")
    for r in results:
        if r.name.startswith("envroute gevent"):
            met = r.rps >= 0.6 * ceiling and r.errors == 0
            print(f"target gevent >= 0.6 of the ceiling, 0 errors: {r.rps / ceiling:.2f}, "
                  f"{r.errors} errors  {'met' if met else 'NOT met'}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--upstream":
        run_upstream(int(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per path")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--delay", type=float, default=0.1, help="the upstream's delay (s)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64, help="gthread threads per worker")
    parser.add_argument("--only", default="", help="comma-separated: gevent,gthread,nginx")
    parser.add_argument("--access-log", action="store_true",
                        help="envroute writes its access lines (to the log file; off by "
                             "default, as nginx's access_log off)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (apt-get install wrk)")
    wanted = set(filter(None, args.only.split(","))) or {"gevent", "gthread", "nginx"}
    load = os.getloadavg()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp, \
            contextlib.ExitStack() as stack:
        work = Path(tmp)
        upstream_port = free_port()
        upstream = stack.enter_context(serve(
            "upstream", [sys.executable, __file__, "--upstream", str(upstream_port),
                         str(args.delay)], upstream_port, work / "upstream.log"))
        print("measuring the upstream ...", flush=True)
        results.append(measure(upstream, {}, args))
        config = work / "envroute.toml"
        config.write_text(f'secret = "{SECRET}"\n[store]\nurl = "sqlite:///{work}/keys.db"\n'
                          f'[backends.api]\nurl = "http://127.0.0.1:{upstream_port}"\n'
                          f'[logging]\naccess = {"true" if args.access_log else "false"}\n')
        key = {"Authorization": f"Bearer {make_key(config)}"}
        env = {"ENVROUTE_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
        for worker_class in ("gevent", "gthread"):
            if worker_class not in wanted:
                continue
            port = free_port()
            shape = (f"{args.workers}" if worker_class == "gevent"
                     else f"{args.workers}x{args.threads}")
            name = f"envroute {worker_class} {shape}"
            with serve(name, gunicorn(port, worker_class, args.workers, args.threads), port,
                       work / f"{worker_class}.log", env) as server:
                print(f"measuring {name} ...", flush=True)
                results.append(measure(server, key, args))
        nginx = shutil.which("nginx")
        if nginx and "nginx" in wanted:
            port = free_port()
            user = "user root root;" if os.geteuid() == 0 else ""
            (work / "nginx.conf").write_text(NGINX_CONF.format(
                dir=work, backend=upstream_port, port=port, user=user))
            with serve("nginx 1 worker", [nginx, "-p", str(work), "-c",
                                          str(work / "nginx.conf"), "-g", "daemon off;"],
                       port, work / "nginx.log") as server:
                print("measuring nginx ...", flush=True)
                results.append(measure(server, {}, args))
        elif "nginx" in wanted:
            print("nginx not installed (apt-get install nginx): skipped", flush=True)
    report(results, args, load)


if __name__ == "__main__":
    main()
