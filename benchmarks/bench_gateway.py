"""What envroute costs per request: a bare WSGI app against the same app behind EnvRouter.

Run: ``python benchmarks/bench_gateway.py`` (``--quick`` for a short run). In one run it
measures, with a verified key on a cache hit:

1. in process: µs per call of the bare app and of the gateway, and the overhead;
2. under gunicorn (gthread, the same workers and threads for both): req/s with wrk
   (``apt-get install wrk``) or, without it, a Python keep-alive load generator;
3. a flood (in process): a thread sends 2,000 made-up keys per second (right checksum,
   unknown to the store) while valid-key requests go on; it reports the valid requests'
   p50/p99 beside the same without a flood, the store queries per second the flood
   costs (distinct keys, and a pool of 500 repeated ones), and the store queries the
   valid key cost (0: a flood cannot evict it).

It prints ratios; the targets (≤ 10 µs of overhead per verified request, ≥ 0.95 of the
bare app's req/s under gunicorn) are reported, never asserted. Only loopback is used.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from apps import bare_app  # noqa: E402

from envroute import EnvRouter, KeyManager, keys  # noqa: E402
from tests.support.processes import BIN, free_port, gunicorn_command, running  # noqa: E402

SECRET = "benchmark-secret-0123456789abcdefghijklmnop"


def write_config(directory: Path) -> Path:
    path = directory / "envroute.toml"
    path.write_text(f'secret = "{SECRET}"\n[store]\nurl = "sqlite:///{directory}/bench.db"\n'
                    '[auth]\ncache_ttl = "60s"\n'
                    # access lines are I/O to a terminal here, not the gateway's own cost
                    '[logging]\naccess = false\n')
    return path


def in_process(config: Path, iterations: int) -> dict[str, float]:
    gateway = EnvRouter(bare_app, config)
    key = KeyManager(gateway.store, gateway.settings).create("sandbox").secret
    base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/charges", "QUERY_STRING": "",
            "SERVER_NAME": "bench", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
            "HTTP_HOST": "bench", "HTTP_ACCEPT": "*/*", "HTTP_USER_AGENT": "bench/1",
            "HTTP_AUTHORIZATION": f"Bearer {key}"}

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        return None

    def measure(app: Any) -> float:
        samples = []
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(iterations):
                for _chunk in app(base.copy(), start_response):
                    pass
            samples.append((time.perf_counter() - began) / iterations * 1e6)
        return min(samples)

    measure(gateway)  # warm the cache
    bare, gated = measure(bare_app), measure(gateway)
    counting = gateway.authenticator.record
    gateway.authenticator.record = lambda identity, status: None  # type: ignore[method-assign]
    uncounted = measure(gateway)  # the same without usage counting (§16)
    gateway.authenticator.record = counting  # type: ignore[method-assign]
    gateway.close()  # writes the usage it counted, stops its timer
    return {"bare_us": bare, "gateway_us": gated, "overhead_us": gated - bare,
            "usage_us": gated - uncounted}


def flood(config: Path, seconds: float, rate: int = 2000) -> dict[str, Any]:
    """Valid-key latency and store queries under a flood of made-up keys (in process)."""
    gateway = EnvRouter(bare_app, config)
    key = KeyManager(gateway.store, gateway.settings).create("sandbox").secret
    queries, valid_queries, sent = [0], [0], [0]
    lookup = gateway.store.lookup
    valid_hash = keys.hash_key(gateway.settings.secret_key, key)

    def counted(key_hash: bytes) -> Any:
        queries[0] += 1
        valid_queries[0] += key_hash == valid_hash
        return lookup(key_hash)

    gateway.store.lookup = counted  # type: ignore[method-assign]

    def call(secret: str) -> None:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/charges", "QUERY_STRING": "",
                   "SERVER_NAME": "bench", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
                   "HTTP_AUTHORIZATION": f"Bearer {secret}"}
        for _chunk in gateway(environ, lambda *args: None):
            pass

    def valid_traffic() -> tuple[list[float], int]:
        latencies, before = [], valid_queries[0]
        ends = time.perf_counter() + seconds
        while time.perf_counter() < ends:
            began = time.perf_counter()
            call(key)
            latencies.append(time.perf_counter() - began)
            time.sleep(0.0005)  # ~1,000 valid requests/s beside the flood
        return sorted(latencies), valid_queries[0] - before

    def attack(stop: threading.Event, pool: list[str] | None) -> None:
        due, n = time.perf_counter(), 0
        while not stop.is_set():
            call(pool[n % len(pool)] if pool else keys.generate_secret("sk_test_"))
            n += 1
            sent[0] += 1
            due += 1 / rate
            time.sleep(max(0.0, due - time.perf_counter()))

    def percentile(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1e6

    call(key)  # cached
    quiet, _ = valid_traffic()
    report: dict[str, Any] = {"rate": rate, "quiet_p50_us": percentile(quiet, 0.5),
                              "quiet_p99_us": percentile(quiet, 0.99)}
    for name, pool in (("distinct", None),
                       ("repeated", [keys.generate_secret("sk_test_") for _ in range(500)])):
        stop = threading.Event()
        attacker = threading.Thread(target=attack, args=(stop, pool))
        began, before, sent[0] = time.perf_counter(), queries[0], 0
        attacker.start()
        latencies, valid_key_queries = valid_traffic()
        stop.set()
        attacker.join()
        elapsed = time.perf_counter() - began
        report[name] = {"p50_us": percentile(latencies, 0.5),
                        "p99_us": percentile(latencies, 0.99),
                        "made_up_keys_per_s": sent[0] / elapsed,
                        "store_queries_per_s": (queries[0] - before) / elapsed,
                        "valid_key_store_queries": valid_key_queries}
    gateway.close()
    return report


#: With two or more cores the server gets one and the load generator another, so they do
#: not steal each other's CPU and the ratio measures the gateway, not the scheduler.
PINNED = (os.cpu_count() or 1) >= 2
SERVER_CPUS, LOAD_CPUS = ["taskset", "-c", "1"], ["taskset", "-c", "0"]


def pinned(command: list[str], cpus: list[str]) -> list[str]:
    return cpus + command if PINNED and shutil.which("taskset") else command


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (gunicorn's workers), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(path.parent.name) == pid or int(fields[1]) == pid:  # fields[1] is the ppid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def wrk(url: str, key: str, seconds: int, connections: int) -> float:
    output = subprocess.run(
        pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", f"X-API-Key: {key}",
                url], LOAD_CPUS),
        capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


def python_load(url: str, key: str, seconds: int, connections: int) -> float:
    host, port = url.split("//")[1].split("/")[0].split(":")
    count = [0] * connections
    stop = time.monotonic() + seconds

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while time.monotonic() < stop:
            conn.request("GET", "/v1/charges", headers={"X-API-Key": key})
            conn.getresponse().read()
            count[n] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(count) / seconds


def under_gunicorn(config: Path, seconds: int, rounds: int) -> dict[str, Any]:
    gateway = EnvRouter(bare_app, config)
    key = KeyManager(gateway.store, gateway.settings).create("sandbox").secret
    gateway.close()
    load = wrk if shutil.which("wrk") else python_load
    env = {"BENCH_CONFIG": str(config),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)])}
    results: dict[str, list[float]] = {"bare": [], "gateway": []}
    cpu: dict[str, list[float]] = {"bare": [], "gateway": []}
    for _ in range(rounds):  # alternate, so drift on a shared machine hits both alike
        for name, app in (("bare", "apps:bare_app"), ("gateway", "apps:gateway_app")):
            port = free_port()
            command = pinned(gunicorn_command(app, port, workers=1, threads=4,
                                              worker_class="gthread"), SERVER_CPUS)
            with running(command, port=port, env=env) as server:
                url = f"http://127.0.0.1:{port}/v1/charges"
                load(url, key, 1, 16)  # warm-up
                before = cpu_seconds(server.pid)
                rps = load(url, key, seconds, 16)
                used = cpu_seconds(server.pid) - before
                results[name].append(rps)
                cpu[name].append(used / (rps * seconds) * 1e6)
    bare, gated = (statistics.median(results[n]) for n in ("bare", "gateway"))
    bare_cpu, gated_cpu = (statistics.median(cpu[n]) for n in ("bare", "gateway"))
    return {"load_generator": load.__name__, "pinned": PINNED, "bare_rps": bare,
            "gateway_rps": gated, "ratio": gated / bare, "bare_cpu_us": bare_cpu,
            "gateway_cpu_us": gated_cpu, "cpu_overhead_us": gated_cpu - bare_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    if not (BIN / "gunicorn").exists():
        sys.exit("gunicorn is needed: pip install 'envroute[all]'")
    with tempfile.TemporaryDirectory() as scratch:
        config = write_config(Path(scratch))
        local = in_process(config, 2_000 if args.quick else 50_000)
        flooded = flood(config, 1.0 if args.quick else 5.0)
        served = under_gunicorn(config, 2 if args.quick else 5, 1 if args.quick else 5)
    report = {"in_process": local, "flood": flooded, "gunicorn": served}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print("envroute gateway benchmark (verified key, cache hit)")
    print(f"  in process:  bare {local['bare_us']:.2f} µs/request, behind EnvRouter "
          f"{local['gateway_us']:.2f} µs/request")
    print(f"               overhead {local['overhead_us']:.2f} µs/request "
          f"(target ≤ 10 µs: {'met' if local['overhead_us'] <= 10 else 'MISSED'}), "
          f"of which usage counting {local['usage_us']:.2f} µs")
    print(f"  flood of {flooded['rate']} made-up keys/s (in process), valid-key latency:")
    print(f"               no flood p50 {flooded['quiet_p50_us']:.0f} µs, "
          f"p99 {flooded['quiet_p99_us']:.0f} µs")
    for name in ("distinct", "repeated"):
        run = flooded[name]
        print(f"               {name:<9} ({run['made_up_keys_per_s']:.0f}/s sent) "
              f"p50 {run['p50_us']:.0f} µs, p99 {run['p99_us']:.0f} µs; "
              f"store {run['store_queries_per_s']:.0f} queries/s, "
              f"{run['valid_key_store_queries']} for the valid key")
    pinning = "server and load on separate cores" if served["pinned"] else "unpinned"
    print(f"  gunicorn gthread, 1 worker x 4 threads, {served['load_generator']}, {pinning}:")
    print(f"               bare {served['bare_rps']:.0f} req/s, behind EnvRouter "
          f"{served['gateway_rps']:.0f} req/s")
    print(f"               server CPU {served['bare_cpu_us']:.1f} -> "
          f"{served['gateway_cpu_us']:.1f} µs/request "
          f"(+{served['cpu_overhead_us']:.1f} µs)")
    print(f"               ratio {served['ratio']:.3f} "
          f"(target ≥ 0.95: {'met' if served['ratio'] >= 0.95 else 'MISSED'})")


if __name__ == "__main__":
    main()
