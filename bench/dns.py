"""DNS benchmark: queries/s of `rke2ha dns serve` over UDP, and of BIND serving the same zone.

Both servers run pinned to CPU 0 (named with one worker thread, `-n 1`), the load
generator to CPU 1, all on loopback (127.0.20.1 for rke2ha; 127.0.0.1 for named, which
only binds addresses its interface scan finds). The load generator is Debian's `dnsperf`,
bounded by time (`-l`) and outstanding queries (`-q`), over a fixed query mix covering the
answer kinds (A, NODATA, NXDOMAIN, SOA, TXT, REFUSED). rke2ha is measured with its answer
cache (the default) and without it (`--no-answer-cache`), so the cost of building answers
with dnspython is visible. Writes bench/results/dns.json. Target: >= 10,000 queries/s.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.query

DURATION = int(os.environ.get("RKE2HA_BENCH_DNS_SECONDS", "10"))
OUTSTANDING = 100
TARGET_QPS = 10_000
HOST = "127.0.20.1"
NAMED_HOST = "127.0.0.1"
QUERIES = [
    "rancher.bench.test A",
    "rancher.bench.test AAAA",
    "nope.bench.test A",
    "bench.test SOA",
    "_rke2ha.rancher.bench.test TXT",
    "example.org A",
]
SPEC = """\
name: bench
hostname: rancher.bench.test
provider: existing
nodes:
  - {name: node-1, address: 127.0.20.101}
  - {name: node-2, address: 127.0.20.102}
  - {name: node-3, address: 127.0.20.103}
load_balancer: {address: 127.0.20.10}
dns: {zone: bench.test, ttl: 60, builtin: {listen: "127.0.20.1:53"}}
"""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait(host: str, port: int) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            dns.query.udp(dns.message.make_query("bench.test", "SOA"), host, port=port, timeout=0.3)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _pin(cpu: int) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu)] if taskset and (os.cpu_count() or 1) > 1 else []


def _dnsperf(host: str, port: int, queries: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            *_pin(1),
            "dnsperf",
            "-s",
            host,
            "-p",
            str(port),
            "-d",
            str(queries),
            "-l",
            str(DURATION),
            "-q",
            str(OUTSTANDING),
            "-c",
            "4",
            "-t",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=DURATION + 30,
        check=False,
    ).stdout

    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([0-9.]+)", out)
        return float(match.group(1)) if match else 0.0

    return {
        "qps": round(number("Queries per second")),
        "completed": int(number("Queries completed")),
        "lost": int(number("Queries lost")),
        "avg_latency_ms": round(number(r"Average Latency \(s\)") * 1000, 3),
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _measure_rke2ha(spec: Path, queries: Path, *flags: str) -> dict[str, Any]:
    port = _free_port(HOST)
    proc = subprocess.Popen(
        [
            *_pin(0),
            sys.executable,
            "-m",
            "rke2ha",
            "dns",
            "serve",
            "-f",
            str(spec),
            "--listen",
            f"{HOST}:{port}",
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(HOST, port)
        return _dnsperf(HOST, port, queries)
    finally:
        _stop(proc)


def _measure_named(workdir: Path, zone_text: str, queries: Path) -> dict[str, Any] | None:
    named = shutil.which("named") or "/usr/sbin/named"
    if not Path(named).exists():
        return None
    port = _free_port(NAMED_HOST)
    (workdir / "bench.test.zone").write_text(zone_text)
    conf = workdir / "named.conf"
    conf.write_text(
        f'options {{ directory "{workdir}"; listen-on port {port} {{ {NAMED_HOST}; }}; '
        f'listen-on-v6 {{ none; }}; pid-file "{workdir}/named.pid"; '
        f'session-keyfile "{workdir}/session.key"; managed-keys-directory "{workdir}"; '
        "recursion no; dnssec-validation no; allow-transfer { none; }; minimal-responses yes; };\n"
        "controls { };\n"
        f'zone "bench.test" {{ type primary; file "{workdir}/bench.test.zone"; }};\n'
    )
    proc = subprocess.Popen(
        [*_pin(0), named, "-g", "-n", "1", "-c", str(conf), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(NAMED_HOST, port)
        result = _dnsperf(NAMED_HOST, port, queries)
        version = subprocess.run([named, "-v"], capture_output=True, text=True, check=False)
        result["version"] = version.stdout.strip()
        return result
    finally:
        _stop(proc)


def run(results_dir: Path) -> None:
    from rke2ha.dns.zone import build_zone
    from rke2ha.specfile import load_spec

    if not shutil.which("dnsperf"):
        raise SystemExit("bench dns: dnsperf is not installed; run: apt-get install dnsperf")
    with tempfile.TemporaryDirectory(prefix="rke2ha-bench-dns-") as tmp:
        workdir = Path(tmp)
        spec_path = workdir / "rke2ha.yaml"
        spec_path.write_text(SPEC)
        queries = workdir / "queries.txt"
        queries.write_text("\n".join(QUERIES) + "\n")
        zone_text = build_zone(load_spec(spec_path), serial=1).to_text()
        cached = _measure_rke2ha(spec_path, queries)
        uncached = _measure_rke2ha(spec_path, queries, "--no-answer-cache")
        bind = _measure_named(workdir, zone_text, queries)
    document: dict[str, Any] = {
        "benchmark": "dns",
        "tool": "dnsperf",
        "transport": "udp",
        "duration_s": DURATION,
        "outstanding": OUTSTANDING,
        "query_mix": QUERIES,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "rke2ha": cached,
        "rke2ha_no_answer_cache": uncached,
        "bind": bind,
        "ratio_rke2ha_to_bind": round(cached["qps"] / bind["qps"], 3) if bind else None,
        "ratio_uncached_to_bind": round(uncached["qps"] / bind["qps"], 3) if bind else None,
        "target_qps": TARGET_QPS,
        "meets_target": cached["qps"] >= TARGET_QPS,
    }
    (results_dir / "dns.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(f"{'server':<28}{'qps':>10}{'lost':>8}{'avg ms':>9}")
    rows = [("rke2ha dns serve", cached), ("rke2ha --no-answer-cache", uncached)]
    if bind:
        rows.append(("BIND named -n 1", bind))
    for label, row in rows:
        print(f"{label:<28}{row['qps']:>10}{row['lost']:>8}{row['avg_latency_ms']:>9}")
    if bind:
        print(f"ratio rke2ha/BIND: {document['ratio_rke2ha_to_bind']}")
