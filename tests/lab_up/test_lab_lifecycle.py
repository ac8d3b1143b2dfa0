"""Bringing labs up and down: stale state after a crash, `down`, foreground Ctrl-C, root.

Each test owns its lab and leaves nothing behind (checked through /proc).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.lab_up.helpers import (
    NODES,
    OFFSET,
    SUBNET_PREFIX,
    assert_nothing_left,
    check,
    down,
    failing,
    lab_pids,
    lab_spec,
    listening_sockets,
    rotation,
    up,
    wait_until,
    write_spec,
)

REAL_PORTS = (53, 80, 443, 6443, 9345)


def test_stale_state_after_kill_9_is_detected_and_recovered(tmp_path: Path) -> None:
    spec_file = write_spec(tmp_path / "rke2ha.yaml", lab_spec())
    try:
        assert up(spec_file).code == 0
        pids = lab_pids(spec_file)
        assert len(pids) == 5
        for pid in pids:  # the whole lab crashes at once
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not lab_pids(spec_file), 10, "every lab process gone")
        run = up(spec_file)
        assert run.code == 0, run.err + run.out
        document = run.json()
        changes = {c["address"]: c["action"] for c in document["plan"]["changes"]}
        assert changes == {
            **{f"node.{n}": "replace" for n in NODES},
            "lb.builtin": "replace",
            "dns.builtin": "replace",
        }
        assert sum("is gone" in note for note in document["plan"]["notes"]) == 5
        assert document["ok"] is True
        assert set(lab_pids(spec_file)).isdisjoint(pids) and len(lab_pids(spec_file)) == 5
    finally:
        assert down(spec_file).code == 0
    assert_nothing_left(spec_file)


def test_stale_pid_reused_by_another_program_is_left_alone(tmp_path: Path) -> None:
    from rke2ha.providers.lab.records import load_state, store
    from rke2ha.specfile import load_spec

    spec_file = write_spec(tmp_path / "rke2ha.yaml", lab_spec())
    try:
        assert up(spec_file).code == 0
        assert down(spec_file).code == 0
        # A state file from "before a reboot": node-1's pid now belongs to another program.
        bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            assert up(spec_file).code == 0
            spec = load_spec(spec_file)
            state = load_state(spec)
            state.resources["node.node-1"].id = str(bystander.pid)
            store(spec).save(state)
            for pid in lab_pids(spec_file):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not lab_pids(spec_file), 10, "every lab process gone")
            run = down(spec_file)
            assert run.code == 0, run.err
            assert bystander.poll() is None, "down killed a process that was not the lab's"
            notes = " ".join(run.json()["plan"]["notes"])
            assert f"pid {bystander.pid} now runs another program" in notes
        finally:
            bystander.kill()
            bystander.wait(5)
    finally:
        down(spec_file)
    assert_nothing_left(spec_file)
    assert not (tmp_path / ".rke2ha" / "lab.state.json").exists()


def test_down_twice_and_nothing_left(tmp_path: Path) -> None:
    spec_file = write_spec(tmp_path / "rke2ha.yaml", lab_spec())
    assert up(spec_file).code == 0
    from tests.lab_up.helpers import rke2ha

    rke2ha("lab", "freeze", "node-2", "-f", str(spec_file))  # a frozen node must die too
    run = down(spec_file)
    assert run.code == 0, run.err
    document = run.json()
    assert document["ok"] is True and document["leftovers"] == []
    assert len(document["stopped"]) == 5
    assert_nothing_left(spec_file)
    again = down(spec_file)
    assert again.code == 0 and again.json()["stopped"] == []


def test_foreground_up_stops_the_lab_on_ctrl_c(tmp_path: Path) -> None:
    spec_file = write_spec(tmp_path / "rke2ha.yaml", lab_spec())
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="160")
    args = ["up", "-f", str(spec_file), "--port-offset", "30000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rke2ha", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "Ctrl-C stops the lab" in line or time.monotonic() > deadline:
                break
        text = "".join(seen)
        assert "lab verified" in text, text
        # The foreground `up` itself names the spec too.
        assert len(set(lab_pids(spec_file)) - {proc.pid}) == 5
        code, document = check(spec_file)
        assert code == 0, failing(document)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
        assert "Stopped 5 lab process(es)." in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
            down(spec_file)
    assert_nothing_left(spec_file)


def _real_ports_free(prefix: str) -> bool:
    return not any(
        entry.rpartition(":")[2] in {str(p) for p in REAL_PORTS}
        for entry in listening_sockets(prefix)
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="real ports below 1024 need root")
def test_root_uses_the_real_ports(tmp_path: Path) -> None:
    if not _real_ports_free("127.0.70."):
        pytest.skip("a real port on 127.0.70.x is in use")
    # Same subnet, real ports: binding 127.0.70.x:443 does not clash with other addresses.
    spec_file = write_spec(tmp_path / "rke2ha.yaml", lab_spec())
    try:
        run = up(spec_file, offset=None)
        assert run.code == 0, run.err + run.out
        document = run.json()
        assert document["port_offset"] == 0
        assert document["url"] == "https://rancher.lab.rke2ha.test/"
        assert any("dig @127.0.70.53 -p 53 " in line for line in document["commands"])
        sockets = set(listening_sockets())
        assert {"tcp 127.0.70.10:443", "tcp 127.0.70.11:9345", "udp 127.0.70.53:53"} <= sockets
        code, result = check(spec_file, offset=None)  # root: check defaults to real ports
        assert code == 0, failing(result)
    finally:
        assert down(spec_file).code == 0
    assert_nothing_left(spec_file)


def test_joining_node_with_health_token(tmp_path: Path) -> None:
    """With `health.token_file` the LB and the check see readiness: a joining node leaves
    6443/9345 rotation and exactly its ingress and apiserver checks fail."""
    from tests.lab_up.helpers import rke2ha

    document = lab_spec()
    document["load_balancer"]["health"]["token_file"] = ".rke2ha/secrets/lab-health-token"
    spec_file = write_spec(tmp_path / "rke2ha.yaml", document)
    try:
        assert up(spec_file).code == 0
        assert rke2ha("lab", "join", "node-3", "-f", str(spec_file)).code == 0
        wait_until(lambda: rotation(spec_file, "node-3") == "none", 10, "node-3 out")
        code, result = check(spec_file)
        assert code == 1
        assert failing(result) == {f"node.node-3.{p}" for p in (80, 443, 6443)}
    finally:
        assert down(spec_file).code == 0
    assert_nothing_left(spec_file)


def test_layer7_lab(tmp_path: Path) -> None:
    """`layer: 7` with the lab's own certificate: TLS ends at the built-in layer-7 proxy.
    The layer and certificate come from examples/lab-l7.yaml, so that example is run too."""
    example = Path(__file__).resolve().parents[2] / "examples" / "lab-l7.yaml"
    front = yaml.safe_load(example.read_text())["load_balancer"]
    document = lab_spec()
    document["load_balancer"]["layer"] = front["layer"]
    document["load_balancer"]["tls"] = front["tls"]
    spec_file = write_spec(tmp_path / "rke2ha.yaml", document)
    try:
        run = up(spec_file)
        assert run.code == 0, run.err + run.out
        result = run.json()
        assert result["ok"] is True
        ids = {c["id"] for c in result["check"]["checks"]}
        assert "node.node-1.443" not in ids  # layer 7 reaches the nodes on port 80 only
        assert {"tls.certificate", "rancher.websocket", "http.redirect"} <= ids
        assert {"rancher.redirect", "rancher.websocket"} <= _passed(result)
        # The nodes read the ingress config `render` writes: without it, a loop.
        config = spec_file.parent / ".rke2ha/lab/lab/ingress-helmchartconfig.yaml"
        values = yaml.safe_load(yaml.safe_load(config.read_text())["spec"]["valuesContent"])
        assert values["controller"]["config"]["use-forwarded-headers"] == "true"
    finally:
        assert down(spec_file).code == 0
    assert_nothing_left(spec_file)


def _passed(result: dict[str, object]) -> set[str]:
    checks = result["check"]["checks"]  # type: ignore[index]
    return {c["id"] for c in checks if c["status"] == "pass"}


def test_send_proxy_lab(tmp_path: Path) -> None:
    """`send_proxy: true`: the load balancer sends PROXY v2 to the nodes' 80/443, whose
    ingress (fed the rendered use-proxy-protocol config) refuses a connection without it."""
    document = lab_spec()
    document["load_balancer"]["send_proxy"] = True
    spec_file = write_spec(tmp_path / "rke2ha.yaml", document)
    try:
        run = up(spec_file)
        assert run.code == 0, run.err + run.out
        result = run.json()
        assert result["ok"] is True
        assert {"rancher.ping", "lb.spread", "node.node-1.80", "node.node-2.443"} <= _passed(result)
        node_1 = f"{SUBNET_PREFIX}11"
        bare = subprocess.run(
            ["curl", "-sS", "-m", "5", f"http://{node_1}:{80 + OFFSET}/healthz"],
            capture_output=True,
            text=True,
            timeout=15,
        )
        assert bare.returncode == 52, bare.stderr  # nginx-like: closed, no answer
    finally:
        assert down(spec_file).code == 0
    assert_nothing_left(spec_file)
