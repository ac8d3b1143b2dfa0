"""`rke2ha lb drain|enable --port-offset N` reaches a built-in load balancer started with
`lb serve -f SPEC --port-offset N` (whose admin endpoint moved by N too); without the offset
the hint names it. Own addresses 127.0.219.20-23."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.lb.conftest import REPO
from tests.maintenance.test_builtin_live import free_port

LB = "127.0.219.10"
OFFSET = 1000


def _spec(path: Path, port: int, admin: int, engine: str = "builtin") -> Path:
    nodes = "\n".join(f"  - {{name: node-{i}, address: 127.0.219.2{i}}}" for i in (1, 2, 3))
    path.write_text(
        f"name: offset\nhostname: rancher.example.test\nprovider: existing\nnodes:\n{nodes}\n"
        f"load_balancer:\n  engine: {engine}\n  address: {LB}\n  admin: {LB}:{admin}\n"
        f"  ports: [{port}]\ndns: {{zone: example.test}}\n"
    )
    return path


def _rke2ha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rke2ha", *args], cwd=REPO, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def _node2(lb: Any) -> Any:
    backends = lb.status()["frontends"][0]["backends"]
    return next(b for b in backends if b["name"] == "node-2")


def test_drain_and_enable_with_the_port_offset(start_lb: Any, tmp_path: Path) -> None:
    port, admin = free_port() - OFFSET, free_port() - OFFSET  # free once moved by OFFSET
    spec = _spec(tmp_path / "rke2ha.yaml", port, admin)
    lb = start_lb(
        "-f", str(spec), "--port-offset", str(OFFSET), "--access-log", "off",
        listen=None, admin=None,
    )  # fmt: skip
    lb.admin = f"{LB}:{admin + OFFSET}"

    missed = _rke2ha("lb", "drain", "node-2", "-f", str(spec))
    assert missed.returncode == 1 and f"{LB}:{admin} " in missed.stderr
    assert "pass the --port-offset it was started with" in missed.stderr

    drain = _rke2ha("lb", "drain", "node-2", "-f", str(spec), "--port-offset", str(OFFSET))
    assert drain.returncode == 0, drain.stderr
    assert drain.stdout.startswith("node-2: drain (no new connections; open ones finish) on")
    assert f"(built-in load balancer, {LB}:{admin + OFFSET})" in drain.stdout
    assert _node2(lb)["state"] == "drain"

    enable = _rke2ha(
        "lb", "enable", "node-2", "-f", str(spec), "--port-offset", str(OFFSET), "--json"
    )
    assert enable.returncode == 0, enable.stderr
    document = json.loads(enable.stdout)
    assert document["node"] == "node-2" and document["action"] == "enable"
    assert "enabled" in document["load_balancers"][0]
    assert _node2(lb)["maintenance_since"] is None


def test_port_offset_is_for_the_builtin_engine(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "rke2ha.yaml", 30080, 30404, engine="haproxy")
    refused = _rke2ha("lb", "drain", "node-2", "-f", str(spec), "--port-offset", "5")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--port-offset is for load_balancer.engine builtin" in refused.stderr
