"""Pre-flight of the load balancer hosts judged without SSH: the facts script's output, the
ports a host connects to, who may hold the load balancer ports, the reach findings."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.lbhost.test_spec_hosts import write

from rke2ha.preflight import lbhosts
from rke2ha.preflight.pairs import ProbeResult
from rke2ha.preflight.parsers import Listener
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec


def spec(tmp_path: Path, **lb: Any) -> Spec:
    return load_spec(write(tmp_path, **lb))


SS = (
    'tcp LISTEN 0 4096 0.0.0.0:443 0.0.0.0:* users:(("haproxy",pid=812,fd=7))\n'
    'tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=90,fd=3))\n'
    'tcp LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=700,fd=6))\n'
)


def output(ours: str) -> str:
    return f"@@rke2ha listen\n{SS}@@rke2ha python\n/usr/bin/python3\n@@rke2ha ours\n{ours}\n"


def test_facts_parse_listeners_python_and_whose_config_runs() -> None:
    found = lbhosts.parse_facts(output("haproxy"))
    assert [(lst.port, lst.process) for lst in found.listeners] == [
        (443, "haproxy (pid 812)"), (22, "sshd (pid 90)"), (80, "nginx (pid 700)"),
    ]  # fmt: skip
    assert found.python == "/usr/bin/python3" and found.ours == {"haproxy"}


def test_the_facts_script_is_read_only_shell_that_finds_the_marker(tmp_path: Path) -> None:
    script = lbhosts.facts_script()
    assert "ss -Hltunp" in script and lbhosts.MARKER in script
    for word in ("rm ", "mv ", ">", "systemctl"):
        assert word not in script.replace("2>/dev/null", ""), word
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    found = lbhosts.parse_facts(done.stdout)
    assert found.python  # this machine has a python3
    assert ("tcp", port) in {(lst.proto, lst.port) for lst in found.listeners}, done.stdout


def test_a_load_balancer_port_held_by_another_process_is_an_error(tmp_path: Path) -> None:
    s = spec(tmp_path)
    finding = lbhosts.ports_finding(s, "lb-1", 0, lbhosts.parse_facts(output("")))
    assert finding is not None and finding.id == "lbhost.ports_free"
    assert finding.severity == "error" and finding.path == "load_balancer.hosts[0]"
    # haproxy holds 443 but its config is not rke2ha's; nginx holds 80: both named.
    assert finding.value == "TCP 443 held by haproxy (pid 812), TCP 80 held by nginx (pid 700)"
    assert "lb-1" in finding.message and "ss -ltnp" in finding.fix


def test_rke2has_own_engine_may_hold_them_but_only_the_spec_engine(tmp_path: Path) -> None:
    s = spec(tmp_path)
    ours = lbhosts.parse_facts(output("haproxy"))
    finding = lbhosts.ports_finding(s, "lb-1", 0, ours)
    assert finding is not None and finding.value == "TCP 80 held by nginx (pid 700)"
    quiet = lbhosts.HostFacts([Listener("tcp", "*", 443, "haproxy (pid 1)")], "p", ours.ours)
    assert lbhosts.ports_finding(s, "lb-1", 0, quiet) is None
    # The spec asks for nginx now: rke2ha's haproxy in the way is an error too.
    assert lbhosts.ports_finding(spec(tmp_path, engine="nginx"), "lb-1", 0, quiet) is not None


def test_a_host_probes_every_port_it_forwards_to_or_checks(tmp_path: Path) -> None:
    s = spec(tmp_path)
    # Layer 4: each port to the same node port; the 80/443 checks and 9345's ask 80 and 6443.
    assert lbhosts.node_ports(s) == [80, 443, 6443, 9345]


def test_reach_findings_name_host_node_and_port() -> None:
    results = [
        ProbeResult("lb-1", "node-1", "tcp", 9345, "open"),
        ProbeResult("lb-1", "node-2", "tcp", 6443, "dropped"),
        ProbeResult("lb-1", "node-3", "tcp", 80, "not probed: no listener on node-3"),
    ]
    (finding,) = lbhosts.judge("lb-1", 1, results, {})
    assert finding.id == "lbhost.reach" and finding.path == "load_balancer.hosts[1]"
    assert finding.value == "to node-2: TCP 6443 dropped"
    assert "from load balancer host lb-1 to node-2" in finding.message
    assert "allow TCP 6443 from lb-1 to node-2" in finding.fix


def test_a_node_name_the_host_cannot_resolve_is_one_finding_per_node() -> None:
    said = "error: Temporary failure in name resolution"
    results = [ProbeResult("lb-1", "node-1", "tcp", port, said) for port in (80, 443, 9345)]
    results.append(ProbeResult("lb-1", "node-2", "tcp", 443, "refused"))
    resolve, reach = lbhosts.judge("lb-1", 0, results, {"node-1": "node-1.lbtest"})
    assert resolve.id == "lbhost.resolve"
    assert resolve.value == "node-1.lbtest: Temporary failure in name resolution"
    assert "lb-1 cannot resolve node-1's address node-1.lbtest" in resolve.message
    assert "make node-1.lbtest resolvable on lb-1" in resolve.fix
    assert reach.id == "lbhost.reach" and reach.value == "to node-2: TCP 443 refused"
