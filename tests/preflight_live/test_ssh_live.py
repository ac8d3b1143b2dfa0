"""How rke2ha reaches the machines, live: the key from an SSH agent (no identity_file), a
node reachable only through a bastion (nodes[].ssh.jump_host), `up` stopped by the
pre-flight before anything exists, and the --json document's stable keys."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.preflight_live.conftest import preflight, write_spec
from tests.preflight_live.test_pairs_live import nft_drop
from tests.support.machines import Testbed

pytestmark = pytest.mark.root


@pytest.fixture
def agent(testbed: Testbed, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An ssh-agent holding the session's key; the environment to reach it (HOME empty,
    so no default key under ~/.ssh can stand in for the agent)."""
    sock = tmp_path / "agent.sock"
    started = subprocess.run(["ssh-agent", "-a", str(sock), "-s"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    pid = started.split("SSH_AGENT_PID=")[1].split(";")[0]
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, SSH_AUTH_SOCK=str(sock), HOME=str(home))
    try:
        subprocess.run(["ssh-add", str(testbed.client_key)], env=env, capture_output=True,
                       check=True)  # fmt: skip
        yield env
    finally:
        subprocess.run(["kill", pid], check=False)


def test_the_key_comes_from_the_agent(testbed: Testbed, tmp_path: Path,
                                      agent: dict[str, str]) -> None:  # fmt: skip
    spec = write_spec(testbed, tmp_path / "spec.yaml", [testbed.machine("node-1")])
    text = spec.read_text().replace(f"  identity_file: {testbed.client_key}\n", "")
    assert "identity_file" not in text
    spec.write_text(text)
    done = testbed.workstation.run(
        [sys.executable, "-m", "rke2ha", "preflight", "-f", str(spec), "--node", "node-1"],
        env=agent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Without the agent (and no identity_file, no key in HOME) the login is refused.
    no_agent = {k: v for k, v in agent.items() if k != "SSH_AUTH_SOCK"}
    done = testbed.workstation.run(
        [sys.executable, "-m", "rke2ha", "preflight", "-f", str(spec), "--node", "node-1"],
        env=no_agent,
    )
    assert done.returncode == 1 and "node.ssh" in done.stdout, done.stdout + done.stderr


def test_a_node_behind_a_bastion(testbed: Testbed, tmp_path: Path) -> None:
    node1, node2 = testbed.machine("node-1"), testbed.machine("node-2")
    spec = write_spec(testbed, tmp_path / "spec.yaml", [node2], ssh={"connect_timeout": "2s"})
    with nft_drop(node2, f"ip saddr {testbed.workstation.address} tcp dport 22"):
        direct = preflight(testbed, spec)
        assert direct.errors() == [("node.ssh", "node-2")]  # the workstation cannot reach it
        text = spec.read_text().replace(
            f"host: {node2.address}\n",
            f"host: {node2.address}\n    jump_host: rke2ha@{node1.address}\n",
        )
        spec.write_text(text)
        through = preflight(testbed, spec)
    assert through.code == 0, through.stdout
    assert through.node("node-2")["facts"]["hostname"] == "node-2"


def test_up_stops_before_anything_exists(testbed: Testbed, tmp_path: Path) -> None:
    spec = write_spec(testbed, tmp_path / "spec.yaml", user="nosudo")
    done = testbed.workstation.rke2ha("up", "-f", str(spec), "--yes")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pre-flight found 3 error(s) on the nodes; nothing was changed" in done.stderr
    assert not (tmp_path / ".rke2ha").exists()


def test_json_keys_are_stable(testbed: Testbed, tmp_path: Path) -> None:
    spec = write_spec(testbed, tmp_path / "spec.yaml")
    run = preflight(testbed, spec, "--node", "node-3")
    assert set(run.doc) == {"ok", "summary", "findings", "nodes", "pairs", "listeners", "seconds"}
    assert run.doc["pairs"] == [] and run.doc["listeners"] == {}
    (node,) = run.doc["nodes"]
    assert set(node) == {"node", "address", "user", "reached", "checks", "facts"}
    assert {c["id"] for c in node["checks"]} == {
        "node.ssh", "node.sudo", "node.systemd", "node.arch", "node.cpu", "node.memory",
        "node.ports_free", "node.firewalld", "node.networkmanager", "node.nm_cloud_setup",
        "node.selinux", "node.apparmor", "node.time_sync", "node.swap", "node.default_route",
        "node.resolve",
    }  # fmt: skip
    for finding in run.doc["findings"]:
        assert set(finding) == {"id", "severity", "node", "value", "message", "fix", "path",
                                "source", "line"}  # fmt: skip
