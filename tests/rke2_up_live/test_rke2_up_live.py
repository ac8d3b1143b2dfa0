"""`rke2ha up` installs RKE2 on the three test machines, through the CLI as a user runs it
(`plan`, `up`, `check`, `down --uninstall-rke2` in the workstation namespace, over SSH as the
unprivileged `rke2ha` user with `sudo -n`), from the stand-in's air-gap artifacts
(tests/support/rke2_standin: RKE2's layout and unit, a real etcd underneath).

What is checked comes from the machines themselves: the real etcd's member list, each
server's own journal (when each joiner was added as a learner and promoted), files and
their modes, `systemctl`. The load balancer is the builtin engine on the workstation; the
hostname is published by `up` in a real BIND (`dns.provider: rfc2136`, userdns.py) that the
workstation and the machines resolve through; the user's CA (userca.py) is what the
workstation trusts.

Time: the stand-in promotes learners every LEARNER_TICK seconds here instead of RKE2's 15
(tests/rke2_standin shows the 15 s interval at work); one cluster with Rancher is installed
once and shared by the tests that only read it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.rke2_standin.conftest import Credentials, etcd_members, https_get, sh, wait_active
from tests.rke2_up_live.standin_cluster import (
    HOSTNAME,
    NODES,
    UP_TIMEOUT,
    VERSION,
    ZONE,
    cli,
    standin_nodes,
    write_spec,
)
from tests.rke2_up_live.userca import make_ca, place
from tests.rke2_up_live.userdns import UserDns, user_dns
from tests.support.machines import Machine, Testbed
from tests.support.machines.testbed import TIMINGS
from tests.support.rke2_standin import IMAGES, build_artifacts


@pytest.fixture(scope="module")
def bed(testbed: Testbed) -> Iterator[Testbed]:
    with standin_nodes(testbed):
        yield testbed


@pytest.fixture(scope="module")
def dns(bed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserDns]:
    machines = [bed.machine(n) for n in NODES]
    with user_dns(bed, tmp_path_factory.mktemp("dns"), ZONE, machines) as server:
        yield server


def _journal(machine: Machine, since: float) -> list[tuple[float, str]]:
    """(epoch seconds, message) of what rke2-server logged on the machine from `since` (epoch
    seconds; the machines share this host's clock) on: the machines are shared by the session,
    and earlier tests ran RKE2 on them too."""
    command = f"journalctl -u rke2-server --no-pager -o short-unix --since=@{int(since)}"
    out = machine.sh(command, timeout=30).stdout
    lines: list[tuple[float, str]] = []
    for line in out.splitlines():
        stamp, _, rest = line.partition(" ")
        try:
            lines.append((float(stamp), rest))
        except ValueError:
            continue
    return lines


def _first(lines: list[tuple[float, str]], text: str) -> float:
    found = [t for t, message in lines if text in message]
    assert found, f"{text!r} not in the journal"
    return found[0]


def _status(resources: dict[str, Any], node: str) -> str | None:
    entry = resources.get(f"rke2.servers.{node}")
    return entry["status"] if entry else None


def _step(resources: dict[str, Any], node: str) -> str | None:
    entry = resources.get(f"rke2.servers.{node}")
    return entry["attrs"].get("step") if entry else None


def _up_killed_when(
    bed: Testbed,
    folder: Path,
    spec: Path,
    log_name: str,
    when: Callable[[dict[str, Any]], bool],
) -> None:
    """`up` in the background, killed with SIGKILL as soon as the state file shows `when`."""
    argv = [sys.executable, "-m", "rke2ha", "up", "-f", str(spec), "--yes"]
    with (folder / log_name).open("w") as log:
        process = bed.workstation.popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + UP_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if when(_state(folder).get("resources", {})):
                break
            time.sleep(0.1)
        alive = process.poll() is None
        process.kill()
        process.wait(timeout=30)
    assert alive, (folder / log_name).read_text()


def _state(folder: Path) -> dict[str, Any]:
    path = folder / ".rke2ha" / "rancher.state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def test_a_corrupted_artifact_stops_before_anything_is_installed(bed, dns, tmp_path):
    artifacts = build_artifacts(tmp_path / "artifacts", VERSION)
    images = artifacts / IMAGES
    images.write_bytes(images.read_bytes()[:-1] + b"!")
    spec = write_spec(bed, dns, tmp_path, artifacts)
    done = cli(bed, "up", "-f", str(spec), "--yes")
    assert done.returncode == 1, done.stdout + done.stderr
    # validate's rule `files` checks the sums first, so `up` stops before any connection
    assert "rke2.airgap.artifacts" in done.stderr
    assert f"{IMAGES} does not match sha256sum-amd64.txt" in done.stderr
    assert "up stopped before doing anything" in done.stderr
    assert "Traceback" not in done.stderr
    print(done.stdout + done.stderr)
    for name in NODES:
        machine = bed.machine(name)
        left = machine.sh("ls /usr/local/bin/rke2 /tmp/rke2ha-artifacts.* 2>/dev/null").stdout
        assert left.strip() == "", (name, left)
    cli(bed, "down", "-f", str(spec), "--yes", timeout=120)


def test_plan_up_killed_after_the_first_server_then_finished_one_join_at_a_time(bed, dns, tmp_path):
    artifacts = build_artifacts(tmp_path / "artifacts", VERSION)
    spec = write_spec(bed, dns, tmp_path, artifacts)
    try:
        _plan_up_rerun_down(bed, tmp_path, spec)
    finally:
        cli(bed, "down", "-f", str(spec), "--yes", "--uninstall-rke2", timeout=300)


def _plan_up_rerun_down(bed: Testbed, folder: Path, spec: Path) -> None:
    since = time.time() - 1
    planned = cli(bed, "plan", "-f", str(spec), "--json", timeout=180)
    assert planned.returncode == 0, planned.stderr
    changes = json.loads(planned.stdout)["changes"]
    rke2 = [(c["symbol"], c["address"]) for c in changes if c["kind"] != "lb_engine"]
    assert rke2[-4:] == [
        ("+", "rke2.servers.node-1"),
        ("+", "rke2.servers.node-2"),
        ("+", "rke2.servers.node-3"),
        ("+", "kubeconfig"),
    ]
    assert "upload the RKE2 artifacts" in changes[-4]["reason"]

    # `up`, killed (SIGKILL) once the first server passed its gate; again while node-2
    # waits for its gate (started, joining); then `up` finishes.
    began = time.monotonic()
    _up_killed_when(bed, folder, spec, "up1.log", lambda r: _status(r, "node-1") == "created")
    first_part = time.monotonic() - began
    resources = _state(folder)["resources"]
    assert resources["rke2.servers.node-1"]["attrs"]["first"] is True
    assert [m["name"] for m in etcd_members(bed.machine("node-1"))] == ["node-1"]

    # A wrong token (the secrets folder lost, so a new token was made): RKE2 would refuse to
    # restart node-1 with it (its etcd data is encrypted with the first token), so `up`
    # refuses before it changes anything, naming the node and the fix, printing no token;
    # node-1 keeps its config and keeps running. With the token put back, `up` goes on.
    token_file = folder / ".rke2ha" / "secrets" / "rancher-rke2-token"
    token = token_file.read_text()
    node1 = bed.machine("node-1")
    config_before = sh(node1, "sha256sum /etc/rancher/rke2/config.yaml")
    token_file.write_text("a-token-this-cluster-never-had\n")
    began = time.monotonic()
    refused = cli(bed, "up", "-f", str(spec), "--yes")
    refused_after = time.monotonic() - began
    token_file.write_text(token)
    said = refused.stdout + refused.stderr
    print(said)
    assert refused.returncode == 1, said
    assert "node-1 holds etcd data made with another cluster token" in refused.stderr
    assert "fix: put the token node-1 was installed with back into rke2.token_file" in said
    assert "a-token-this-cluster-never-had" not in said and token.strip() not in said
    assert "Traceback" not in refused.stderr
    assert sh(node1, "sha256sum /etc/rancher/rke2/config.yaml") == config_before
    assert sh(node1, "systemctl is-active rke2-server").strip() == "active"
    TIMINGS.append(f"rke2ha up: a token that would break node-1 refused after {refused_after:.1f}s")
    fix = "fix: node-1 was refused by the cluster: its token is not the cluster's; the token"

    began = time.monotonic()
    _up_killed_when(bed, folder, spec, "up2.log", lambda r: _step(r, "node-2") == "start: done")
    second_part = time.monotonic() - began
    assert _state(folder)["resources"]["rke2.servers.node-2"]["status"] == "pending"

    # A joiner refused for its token: the cluster's token rotated on the servers (as `rke2
    # token rotate` does; rewritten by hand here) while the token file keeps the old one.
    # node-1 and node-2 are left alone (their configs did not change); node-3 is refused
    # with 401 and `up` stops within seconds naming node-3 and the fix. With the token put
    # back, node-3 joins (its unit keeps retrying) and the next `up` finishes.
    server_token = "/var/lib/rancher/rke2/server/token"
    rotated = [bed.machine(n) for n in ("node-1", "node-2")]
    wait_active(bed.machine("node-2"), 60)  # node-2's join, begun by the killed run
    saved = {m.name: sh(m, f"cat {server_token}") for m in rotated}
    for machine in rotated:
        sh(machine, f"echo a-rotated-cluster-password > {server_token}")
    try:
        joiner = cli(bed, "up", "-f", str(spec), "--yes")
    finally:
        for machine in rotated:
            machine.sh(f"umask 077; cat > {server_token}", input=saved[machine.name], check=True)
    print(joiner.stdout + joiner.stderr)
    assert joiner.returncode == 1, joiner.stdout + joiner.stderr
    assert "node node-3: rke2-server was refused for its token" in joiner.stderr
    assert "401 Unauthorized" in joiner.stderr
    assert f"{fix.replace('node-1', 'node-3')} in {token_file}" in joiner.stderr
    assert "Traceback" not in joiner.stderr

    rerun_began = time.monotonic()
    done = cli(bed, "up", "-f", str(spec), "--yes")
    rerun = time.monotonic() - rerun_began
    (folder / "up3.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    TIMINGS.append(
        f"rke2ha up (3 stand-in servers): killed {first_part:.1f}s in (first server ready), "
        f"killed {second_part:.1f}s in (node-2 joining), finished in {rerun:.1f}s"
    )
    print((folder / "up1.log").read_text() + (folder / "up2.log").read_text() + done.stdout)

    # The real etcd: three voters.
    members = etcd_members(bed.machine("node-1"))
    assert sorted(m["name"] for m in members) == list(NODES)
    assert not any(m.get("isLearner") for m in members)
    # Joins one at a time, from the machines' own journals: node-3 was added as a learner
    # only after node-2 had been promoted; node-1 started exactly once (no second first).
    journals = {n: _journal(bed.machine(n), since) for n in NODES}
    node2_promoted = _first(journals["node-2"], "etcd member node-2 promoted to voter")
    node3_added = _first(journals["node-3"], "Adding member node-3")
    assert node2_promoted <= node3_added, (node2_promoted, node3_added)
    assert _first(journals["node-2"], "Adding member node-2") >= _first(
        journals["node-1"], "rke2 is up and running"
    )
    starts = [m for _, m in journals["node-1"] if "Managed etcd cluster initializing" in m]
    assert len(starts) == 1
    for name in NODES:
        machine = bed.machine(name)
        assert sh(machine, "stat -c '%a %U' /etc/rancher/rke2/config.yaml").split() == [
            "600",
            "root",
        ]
        assert sh(machine, "systemctl is-enabled rke2-server").strip() == "enabled"
        assert machine.sh("ls /tmp/rke2ha-artifacts.* 2>/dev/null").stdout.strip() == ""
        config = yaml.safe_load(sh(machine, "cat /etc/rancher/rke2/config.yaml"))
        assert ("server" in config) == (name != "node-1")
        assert HOSTNAME in config["tls-san"]
    kubeconfig = folder / ".rke2ha" / "rancher.kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    kube = yaml.safe_load(kubeconfig.read_text())
    assert kube["clusters"][0]["cluster"]["server"] == f"https://{HOSTNAME}:6443"
    assert kube["current-context"] == "rancher"

    # A second `up` changes nothing and starts nothing.
    starts_before = {n: len(journals[n]) for n in NODES}
    again = cli(bed, "up", "-f", str(spec), "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout, again.stdout
    for name in NODES:
        new = _journal(bed.machine(name), since)[starts_before[name] :]
        assert not any("Starting rke2" in m for _, m in new), (name, new)

    # down --uninstall-rke2 says what it deletes, then leaves the machines without RKE2.
    down = cli(bed, "down", "-f", str(spec), "--yes", "--uninstall-rke2", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "deletes /etc/rancher/rke2" in down.stdout
    for name in NODES:
        machine = bed.machine(name)
        assert machine.sh("test -e /usr/local/bin/rke2").returncode != 0
        assert machine.sh("test -e /var/lib/rancher/rke2/server").returncode != 0
    assert not kubeconfig.exists()

    print(down.stdout)


# ---- one cluster from nothing, with Rancher, shared by the tests that only read it ---------


@dataclass
class Installed:
    folder: Path
    spec: Path
    env: dict[str, str]  # HOME with a kubeconfig of its own, SSL_CERT_FILE: the user's CA
    planned: subprocess.CompletedProcess[str]
    up: subprocess.CompletedProcess[str]
    took: float
    other_context: dict[str, Any]  # ~/.kube/config as it was before `up --merge-kubeconfig`


OTHER_KUBECONFIG: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "elsewhere", "cluster": {"server": "https://192.0.2.10:6443"}}],
    "users": [{"name": "elsewhere", "user": {"token": "not-a-real-token"}}],
    "contexts": [{"name": "elsewhere", "context": {"cluster": "elsewhere", "user": "elsewhere"}}],
    "current-context": "elsewhere",
}


@pytest.fixture(scope="module")
def cluster(
    bed: Testbed, dns: UserDns, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    """`plan`, then `up --merge-kubeconfig` from nothing with rancher.install, as a user with
    a kubeconfig of their own and their CA in the workstation's trust."""
    folder = tmp_path_factory.mktemp("cluster")
    artifacts = build_artifacts(folder / "artifacts", VERSION)
    spec = write_spec(bed, dns, folder, artifacts, rancher=True)
    ca, ca_key = make_ca(folder)
    place(bed.machine("node-1"), ca, ca_key)
    home = folder / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(yaml.safe_dump(OTHER_KUBECONFIG, sort_keys=False))
    env = {**os.environ, "HOME": str(home), "SSL_CERT_FILE": str(ca)}
    try:
        planned = cli(bed, "plan", "-f", str(spec), "--json", timeout=180, env=env)
        began = time.monotonic()
        up = cli(bed, "up", "-f", str(spec), "--yes", "--merge-kubeconfig", env=env)
        took = time.monotonic() - began
        (folder / "up.log").write_text(up.stdout + up.stderr)
        yield Installed(folder, spec, env, planned, up, took, OTHER_KUBECONFIG)
    finally:
        cli(bed, "down", "-f", str(spec), "--yes", "--uninstall-rke2", timeout=300, env=env)


@pytest.mark.timeout(UP_TIMEOUT)  # the shared cluster's `up` is paid for here
def test_plan_then_up_from_nothing_ends_with_check_passing(bed, cluster):
    assert cluster.planned.returncode == 0, cluster.planned.stdout + cluster.planned.stderr
    changes = json.loads(cluster.planned.stdout)["changes"]
    planned = [(c["symbol"], c["address"]) for c in changes if c["kind"] != "lb_engine"]
    assert planned == [
        ("+", "dns_record.hostname"),
        *(("+", f"rke2.servers.{name}") for name in NODES),
        ("+", "kubeconfig"),
        ("+", "rancher.release"),
    ], planned
    up = cluster.up
    assert up.returncode == 0, up.stdout + up.stderr
    print(up.stdout)
    TIMINGS.append(
        f"rke2ha up from nothing to 3 stand-in servers, Rancher and check passing: "
        f"{cluster.took:.1f}s"
    )
    assert f"https://{HOSTNAME}/ping answers pong" in up.stdout
    # `up` ran the checks once Rancher answered: the table, then the verdict line.
    assert up.stdout.index("answers pong") < up.stdout.index(f"rke2ha check: {HOSTNAME}")
    assert "OK: " in up.stdout and " 0 failed" in up.stdout, up.stdout
    # The record `up` published, as the machines resolve it (through the BIND server).
    for name in NODES:
        answer = sh(bed.machine(name), f"getent ahostsv4 {HOSTNAME}").split()
        assert answer[0] == bed.workstation.address, (name, answer)


def test_check_passes_through_the_cli(bed, cluster):
    """`rke2ha check` as the user runs it afterwards: exit 0. The websocket check is
    skipped, which does not fail `check`: a real Rancher needs an API token for
    /v3/subscribe (`check --token`), and a fresh install has none yet."""
    checked = cli(bed, "check", "-f", str(cluster.spec), "--json", timeout=120, env=cluster.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    results = {r["id"]: r["status"] for r in json.loads(checked.stdout)["checks"]}
    not_passed = {k: v for k, v in results.items() if v != "pass"}
    assert not_passed == {"rancher.websocket": "skip"}, checked.stdout
    assert {"dns.record", "rancher.ping", "tls.certificate", "lb.spread", "registration"} <= set(
        results
    )
    TIMINGS.append(
        f"rke2ha check after up: {len(results) - 1} of {len(results)} pass, 1 skipped, exit 0"
    )
    table = cli(bed, "check", "-f", str(cluster.spec), timeout=120, env=cluster.env)
    assert table.returncode == 0, table.stdout + table.stderr
    print(table.stdout)


def test_rancher_through_the_load_balancer_after_the_servers(bed, cluster):
    password = (cluster.folder / ".rke2ha" / "secrets" / "rancher-bootstrap-password").read_text()
    assert password.strip() and password.strip() not in cluster.up.stdout + cluster.up.stderr
    node1 = bed.machine("node-1")
    manifests = "/var/lib/rancher/rke2/server/manifests"
    modes = sh(node1, f"stat -c '%a %n' {manifests}/rke2ha-*.yaml").split("\n")
    assert sorted(m for m in modes if m) == [
        f"600 {manifests}/rke2ha-cert-manager.yaml",
        f"600 {manifests}/rke2ha-rancher.yaml",
    ]
    # Only on the first server (RKE2 applies a manifest from any server's folder).
    assert bed.machine("node-2").sh(f"ls {manifests}/rke2ha-rancher.yaml").returncode != 0
    # Rancher through the load balancer, asked by this test with curl, by name (resolved
    # through the BIND server) and verified against the user's CA.
    curl = bed.workstation.run(
        ["curl", "-s", "--max-time", "10", "--cacert", cluster.env["SSL_CERT_FILE"],
         f"https://{HOSTNAME}/ping"]
    )  # fmt: skip
    assert curl.stdout == "pong", curl.stdout + curl.stderr
    again = cli(bed, "up", "-f", str(cluster.spec), "--yes", env=cluster.env)
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout


def test_merge_kubeconfig_keeps_other_contexts_and_the_new_one_reaches_the_apiserver(
    bed, cluster, tmp_path
):
    home_config = Path(cluster.env["HOME"]) / ".kube" / "config"
    assert home_config.stat().st_mode & 0o777 == 0o600
    merged = yaml.safe_load(home_config.read_text())
    other = cluster.other_context
    for key in ("clusters", "users", "contexts"):
        by_name = {e["name"]: e for e in merged[key]}
        assert by_name["elsewhere"] == other[key][0], key
        assert "rancher" in by_name, key
    assert merged["current-context"] == "elsewhere"
    entries = {key: {e["name"]: e for e in merged[key]} for key in ("clusters", "users")}
    server = entries["clusters"]["rancher"]["cluster"]
    assert server["server"] == f"https://{HOSTNAME}:6443"
    user = entries["users"]["rancher"]["user"]
    creds = Credentials(tmp_path / "ca.crt", tmp_path / "client.crt", tmp_path / "client.key")
    creds.ca.write_bytes(base64.b64decode(server["certificate-authority-data"]))
    assert creds.cert and creds.key
    creds.cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    creds.key.write_bytes(base64.b64decode(user["client-key-data"]))
    creds.key.chmod(0o600)
    # The apiserver through the load balancer, by name, with the merged context's client
    # certificate: the node list answers; without the certificate it does not.
    url = f"https://{HOSTNAME}:6443/api/v1/nodes"
    reply = https_get(bed, url, creds)
    assert reply.status == 200, reply
    names = sorted(item["metadata"]["name"] for item in json.loads(reply.body)["items"])
    assert names == list(NODES)
    assert https_get(bed, url, creds, client=False).status in (401, 403)


def test_up_fails_naming_the_checks_that_fail_after_rancher_answers(bed, cluster):
    """`up` from a workstation that does not trust the CA behind Rancher's certificate: the
    release is applied again (its manifest was removed on node-1), Rancher answers /ping,
    and the checks `up` then runs fail on the certificate: exit 1, naming the check."""
    manifest = "/var/lib/rancher/rke2/server/manifests/rke2ha-rancher.yaml"
    sh(bed.machine("node-1"), f"rm {manifest}")
    untrusting = {k: v for k, v in cluster.env.items() if k != "SSL_CERT_FILE"}
    done = cli(bed, "up", "-f", str(cluster.spec), "--yes", env=untrusting)
    print(done.stdout + done.stderr)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "~ rancher.release" in done.stdout or "+ rancher.release" in done.stdout, done.stdout
    assert "answers pong" in done.stdout
    assert "FAILED: " in done.stdout, done.stdout
    error = [line for line in done.stderr.splitlines() if "check failed" in line]
    assert len(error) == 1, done.stderr
    assert error[0].startswith("rke2ha up: error: check failed: tls.certificate; fix"), error
    assert f"rke2ha check -f {cluster.spec}" in error[0], error
    assert "Traceback" not in done.stderr
    assert sh(bed.machine("node-1"), f"stat -c %a {manifest}").strip() == "600"
    # With the CA trusted again, `check` passes: nothing was left broken.
    checked = cli(bed, "check", "-f", str(cluster.spec), timeout=120, env=cluster.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
