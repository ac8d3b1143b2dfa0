"""Load balancers in front of real-nginx ingress nodes (tests/support/ingress_nginx.py).

Everything runs on 127.0.133.0/24 on the real ports 80/443, so root is needed: the nodes at
127.0.133.11-13, the load balancer at 127.0.133.10, its admin/stats page on port 18404.
`Engine` starts the built-in load balancer (`rke2ha lb serve -f SPEC`) or the rendered
HAProxy (`haproxy -f`) and reads which node is in rotation on which port.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.render.helpers import SpecFactory, render
from tests.support.procs import stop

HOSTNAME = "rancher.example.com"
LB = "127.0.133.10"
NODES = ("127.0.133.11", "127.0.133.12", "127.0.133.13")
NAMES = ("node-1", "node-2", "node-3")
ADMIN = f"{LB}:18404"
CONVERGE_SECONDS = 15.0


def spec_overrides(**load_balancer: Any) -> dict[str, Any]:
    """The example spec moved onto this area's addresses, with fast checks (1 to rise/fall)."""
    return {
        "hostname": HOSTNAME,
        "nodes": [{"name": n, "address": a} for n, a in zip(NAMES, NODES, strict=True)],
        "load_balancer": {
            "address": LB,
            "admin": ADMIN,
            "ports": [80, 443],
            "health": {"interval": "200ms", "timeout": "500ms", "rise": 1, "fall": 1},
            "max_connections": 1000,
            **load_balancer,
        },
        "dns": {"rfc2136": {"server": "127.0.133.53"}},
        "rancher": {"tls_source": "external" if load_balancer.get("layer") == 7 else "rancher"},
    }


class Engine:
    """One running load balancer of kind `builtin` or `haproxy`; `stop()` always ends it."""

    def __init__(self, kind: str, specs: SpecFactory, tmp_path: Path, **load_balancer: Any):
        self.kind = kind
        self.log = tmp_path / f"{kind}.log"
        spec_file = specs.write(spec_overrides(**load_balancer))
        if kind == "builtin":
            argv = [sys.executable, "-m", "rke2ha", "lb", "serve", "-f", str(spec_file)]
        else:
            out = tmp_path / "out"
            render(specs.load(spec_overrides(**load_balancer)), out, bind_host=LB)
            self.config = out / "haproxy/haproxy.cfg"
            argv = ["haproxy", "-db", "-f", str(self.config)]
        self.proc = subprocess.Popen(
            argv,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )

    def stop(self) -> None:
        stop(self.proc)

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def rotation(self) -> dict[tuple[int, str], bool]:
        """(load balancer port, node name) -> in rotation, read from /status or HAProxy stats."""
        if self.kind == "builtin":
            with urllib.request.urlopen(f"http://{ADMIN}/status", timeout=2) as response:
                status = json.load(response)
            return {
                (int(fe["address"].rpartition(":")[2]), b["name"]): b["state"] == "up"
                for fe in status["frontends"]
                for b in fe["backends"]
            }
        with urllib.request.urlopen(f"http://{ADMIN}/;csv", timeout=2) as response:
            text = response.read().decode()
        rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
        return {
            (_haproxy_port(row["pxname"]), row["svname"]): row["status"].startswith("UP")
            for row in rows
            if row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_rotation(self, expected: dict[tuple[int, str], bool]) -> None:
        deadline = time.monotonic() + CONVERGE_SECONDS
        seen: dict[tuple[int, str], bool] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.kind} exited: {self.output()}")
            try:
                seen = self.rotation()
            except OSError:
                seen = {}
            if seen and all(seen.get(key) == value for key, value in expected.items()):
                return
            time.sleep(0.1)
        pytest.fail(f"{self.kind}: rotation never became {expected}; saw {seen}\n{self.output()}")

    def hold_rotation(self, expected: dict[tuple[int, str], bool], seconds: float) -> None:
        """Fail if the rotation differs from `expected` at any sample during `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen = self.rotation()
            wrong = {k: v for k, v in expected.items() if seen.get(k) != v}
            assert not wrong, f"{self.kind}: {wrong} changed; saw {seen}\n{self.output()}"
            time.sleep(0.1)


def _haproxy_port(backend: str) -> int:
    # rke2ha_<port> at layer 4; at layer 7 80 and 443 share rke2ha_ingress (443 serves)
    suffix = backend.rpartition("_")[2]
    return 443 if suffix == "ingress" else int(suffix)


def everyone(
    up: bool = True, *, but: str | None = None, ports: tuple[int, ...] = (80, 443)
) -> dict[tuple[int, str], bool]:
    return {(port, name): up != (name == but) for port in ports for name in NAMES}


def ping_through_lb(ca_file: Path, times: int) -> list[str]:
    """`curl --resolve HOST:443:LB https://HOST/ping` `times` times; the bodies (or errors)."""
    bodies = []
    for _ in range(times):
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "-m",
                "5",
                "--cacert",
                str(ca_file),
                "--resolve",
                f"{HOSTNAME}:443:{LB}",
                f"https://{HOSTNAME}/ping",
            ],
            capture_output=True,
            text=True,
            timeout=15,
        )
        bodies.append(out.stdout if out.returncode == 0 else f"error: {out.stderr.strip()}")
    return bodies
