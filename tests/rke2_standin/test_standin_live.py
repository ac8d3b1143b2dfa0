"""The RKE2 stand-in on the test machines: installed from its air-gap artifacts with the
machine's own sh, run by systemd, its datastore the machines' real etcd. Each step reads the
result from the machines themselves (etcdctl, journalctl, systemctl) or over the network
from the workstation namespace."""

from __future__ import annotations

import re
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.rke2_standin.conftest import (
    Credentials,
    etcd_members,
    https_get,
    install,
    journal,
    kubeconfig_credentials,
    now,
    rancher_manifests,
    raw_get,
    remove_members,
    sh,
    start,
    stop_and_forget,
    unit_state,
    upload,
    wait_active,
    wait_journal,
    write_config,
)
from tests.support.machines import Machine, Testbed
from tests.support.machines.testbed import TIMINGS
from tests.support.rke2_standin import IMAGES, build_artifacts

VERSION = "v1.33.2+rke2r1"
TOKEN = "standin-test-token-0123456789"
HOSTNAME = "rancher.example.test"
# The stand-in's time from HelmChart to Rancher answering (its default is 5 s), set through
# the unit's environment file.
RANCHER_DELAY = 1
STANDIN_DEFAULTS = "/etc/default/rke2-server"
# Seconds between learner promotions where a test does not watch RKE2's 15 s interval
# (the second join and the two joins at once do), set on the leader while it runs.
SHORT_TICK = 2
HELD_TICK = 120  # no promotion during a test that must meet a learner
TICK_FILE = "/run/rke2-standin-learner-tick"

pytestmark = pytest.mark.usefixtures("installed")


@pytest.fixture(scope="module")
def installed(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """node-1..3 with the stand-in installed (and removed again at the end, also on failure)."""
    artifacts = build_artifacts(tmp_path_factory.mktemp("artifacts"), VERSION)
    machines = [testbed.machine(n) for n in ("node-1", "node-2", "node-3")]
    try:
        for machine in machines:
            upload(machine, artifacts)
            done = install(machine)
            assert done.returncode == 0, done.stdout + done.stderr
            sh(machine, f"echo RKE2_STANDIN_RANCHER_DELAY={RANCHER_DELAY} > {STANDIN_DEFAULTS}")
        yield artifacts
    finally:
        for machine in machines:
            machine.sh(
                "/usr/local/bin/rke2-uninstall.sh >/dev/null 2>&1; rm -rf /root/rke2-artifacts; "
                f"rm -f {STANDIN_DEFAULTS} {TICK_FILE}"
            )


def url(machine: Machine, port: int, path: str) -> str:
    return f"https://{machine.address}:{port}{path}"


def config(
    machine: Machine, server: Machine | None = None, token: str = TOKEN
) -> dict[str, object]:
    doc: dict[str, object] = {
        "token": token,
        "tls-san": ["rancher.example.test", machine.address],
        "node-name": machine.name,
    }
    if server is not None:
        doc["server"] = f"https://{server.address}:9345"
    return doc


def test_online_install_through_sudo_reads_the_test_mirror(
    testbed: Testbed, installed: Path
) -> None:
    """Online mode as rke2ha runs it: INSTALL_RKE2_VERSION through `sudo -n` as a user, the
    environment dropped by sudo, the files from the mirror a test named in a file."""
    with testbed.extra_machine("node-5") as node5:
        mirror = f"/root/rke2-mirror/{VERSION}"
        upload(node5, installed, mirror)
        sh(node5, "echo /root/rke2-mirror > /etc/rke2-standin-mirror")
        command = f"sudo -n env INSTALL_RKE2_VERSION={VERSION} sh {mirror}/install.sh"
        done = node5.sh(f"su rke2ha -s /bin/sh -c {shlex.quote(command)}", timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"using {VERSION} as release" in done.stdout
        assert VERSION in sh(node5, "rke2 --version")
        # Online installs place no images tarball (only the air-gap path does).
        assert node5.sh("ls /var/lib/rancher/rke2/agent/images").returncode != 0
        missing = node5.sh(
            f"su rke2ha -s /bin/sh -c {shlex.quote(command.replace(VERSION, 'v1.30.0+rke2r1', 1))}"
        )
        assert missing.returncode == 1 and "no release v1.30.0+rke2r1" in missing.stderr


@pytest.fixture(scope="module")
def first(
    testbed: Testbed, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Machine, Credentials]:
    """node-1 started as the first server, with the kubeconfig's credentials."""
    node1 = testbed.machine("node-1")
    # debug: the learner ticks show in node-1's journal (the join test starts after one).
    write_config(node1, {**config(node1), "debug": True})
    start(node1)
    TIMINGS.append(f"rke2 stand-in: first server active in {wait_active(node1):.1f}s")
    return node1, kubeconfig_credentials(node1, tmp_path_factory.mktemp("kubeconfig"))


def test_install_places_files_and_starts_nothing(testbed: Testbed) -> None:
    node3 = testbed.machine("node-3")
    listing = sh(node3, "ls /usr/local/bin /usr/local/lib/systemd/system")
    for name in ("rke2", "rke2-killall.sh", "rke2-uninstall.sh", "rke2-server.service"):
        assert name in listing.split()
    assert sh(node3, "ls /var/lib/rancher/rke2/agent/images/").split() == [IMAGES]
    assert VERSION in sh(node3, "rke2 --version")
    assert unit_state(node3) == "inactive"
    assert node3.sh("systemctl is-enabled rke2-server").stdout.strip() == "disabled"
    # Type=notify and no start timeout, as the real unit (rke2-server.service).
    shown = sh(node3, "systemctl show rke2-server -p Type -p TimeoutStartUSec -p KillMode")
    assert "Type=notify" in shown and "TimeoutStartUSec=infinity" in shown
    assert "KillMode=process" in shown


def test_first_server_serves_and_starts_a_one_member_etcd(
    testbed: Testbed, first: tuple[Machine, Credentials]
) -> None:
    node1, creds = first
    ping = https_get(testbed, url(node1, 9345, "/ping"), creds, client=False)
    assert (ping.status, ping.body) == (200, "pong")
    assert https_get(testbed, url(node1, 6443, "/readyz"), creds).status == 200
    anonymous = https_get(testbed, url(node1, 6443, "/readyz"), creds, client=False)
    assert anonymous.status == 401 and '"reason": "Unauthorized"' in anonymous.body
    members = etcd_members(node1)
    assert [m["name"] for m in members] == ["node-1"]
    assert members[0]["peerURLs"] == [f"https://{node1.address}:2380"]
    token = sh(node1, "cat /var/lib/rancher/rke2/server/node-token").strip()
    ca_sum = sh(node1, "sha256sum /var/lib/rancher/rke2/server/tls/server-ca.crt").split()[0]
    assert token == f"K10{ca_sum}::server:{TOKEN}"
    assert sh(node1, "stat -c %a /etc/rancher/rke2/rke2.yaml").strip() == "600"
    assert "server: https://127.0.0.1:6443" in sh(node1, "cat /etc/rancher/rke2/rke2.yaml")
    assert "etcd" in sh(node1, "ps -eo comm")
    # Only rke2 tells systemd it is ready (etcd would too, given NOTIFY_SOCKET).
    assert "reception only permitted for main PID" not in journal(node1)


def test_authentication_config_lets_anonymous_callers_see_readiness_only(
    testbed: Testbed, first: tuple[Machine, Credentials]
) -> None:
    node1, creds = first
    # The AuthenticationConfiguration `rke2ha render` writes, loaded the way it says.
    auth = {
        "apiVersion": "apiserver.config.k8s.io/v1beta1",
        "kind": "AuthenticationConfiguration",
        "anonymous": {"enabled": True, "conditions": [{"path": "/livez"}, {"path": "/readyz"}]},
    }
    path = "/etc/rancher/rke2/authentication-config.yaml"
    done = node1.sh(f"umask 077 && cat > {path}", input=yaml.safe_dump(auth))
    assert done.returncode == 0, done.stderr
    write_config(
        node1,
        {**config(node1), "debug": True, "kube-apiserver-arg": [f"authentication-config={path}"]},
    )
    since = now(node1)
    sh(node1, "systemctl restart rke2-server", timeout=90)
    assert "bootstrap already complete" in journal(node1, since)
    assert https_get(testbed, url(node1, 6443, "/readyz"), creds, client=False).status == 200
    assert https_get(testbed, url(node1, 6443, "/livez"), creds, client=False).status == 200
    assert https_get(testbed, url(node1, 6443, "/version"), creds, client=False).status == 401
    assert https_get(testbed, url(node1, 6443, "/api/v1/nodes"), creds, client=False).status == 401
    assert [m["name"] for m in etcd_members(node1)] == ["node-1"]


def test_wrong_token_is_refused(testbed: Testbed, first: tuple[Machine, Credentials]) -> None:
    node1, _ = first
    node3 = testbed.machine("node-3")
    since = now(node3)
    try:
        write_config(node3, config(node3, server=node1, token="not-the-token"))
        start(node3)
        log = wait_journal(node3, "401 Unauthorized", since)
        assert "failed to validate server configuration" in log
        assert "level=fatal" in log
        assert unit_state(node3) != "active"
        assert "status=1/FAILURE" in wait_journal(node3, "status=1/FAILURE", since)
        assert [m["name"] for m in etcd_members(node1)] == ["node-1"]
        assert "invalid username/password combination" in journal(node1, since)
    finally:
        stop_and_forget(node3)


def test_joiner_whose_server_does_not_answer_does_not_join(
    testbed: Testbed, first: tuple[Machine, Credentials]
) -> None:
    node1, _ = first
    node2, node3 = testbed.machine("node-2"), testbed.machine("node-3")
    since = now(node3)
    try:
        # node-2 runs no RKE2 yet: nothing listens on its 9345.
        write_config(node3, config(node3, server=node2))
        start(node3)
        log = wait_journal(node3, "failed to get CA certs", since)
        assert "Connection refused" in log or "connection refused" in log
        assert unit_state(node3) != "active"
        assert [m["name"] for m in etcd_members(node1)] == ["node-1"]
    finally:
        stop_and_forget(node3)


def test_server_without_server_key_starts_a_second_cluster(
    testbed: Testbed, first: tuple[Machine, Credentials]
) -> None:
    """What RKE2 does with a missing `server:`: no error, a new cluster of its own (own CA,
    own etcd) with the same token; only the CA hash in node-token tells them apart."""
    node1 = first[0]
    node3 = testbed.machine("node-3")
    try:
        write_config(node3, config(node3))
        start(node3)
        wait_active(node3)
        assert [m["name"] for m in etcd_members(node3)] == ["node-3"]
        assert [m["name"] for m in etcd_members(node1)] == ["node-1"]
        token1 = sh(node1, "cat /var/lib/rancher/rke2/server/node-token").strip()
        token3 = sh(node3, "cat /var/lib/rancher/rke2/server/node-token").strip()
        assert token1 != token3 and token1.split("::")[1] == token3.split("::")[1]
    finally:
        stop_and_forget(node3)


def test_second_server_joins_through_etcd(
    testbed: Testbed, first: tuple[Machine, Credentials]
) -> None:
    node1, creds = first
    node2 = testbed.machine("node-2")
    token = sh(node1, "cat /var/lib/rancher/rke2/server/node-token").strip()
    since = now(node2)
    write_config(node2, config(node2, server=node1, token=token))
    # Right after a learner tick of node-1, so the next one is ~15 s away: time to watch
    # the joiner while it is a learner.
    wait_journal(node1, "Checking etcd learners", since, timeout=20)
    start(node2)
    seen: set[tuple[str, int, str]] = set()
    began = time.monotonic()
    while unit_state(node2) != "active" and time.monotonic() - began < 30:
        ping = https_get(testbed, url(node2, 9345, "/ping"), creds, client=False, tolerate=True)
        if ping.status == 200:
            readyz = https_get(testbed, url(node2, 6443, "/readyz"), creds).status
            seen.add((ping.body, readyz, unit_state(node2)))
        time.sleep(0.3)
    TIMINGS.append(f"rke2 stand-in: second server joined in {time.monotonic() - began:.1f}s")
    # 9345 answered while the node was still joining: not ready on 6443, not started.
    assert ("pong", 500, "activating") in seen, seen
    wait_active(node2)
    members = etcd_members(node1)
    assert sorted(m["name"] for m in members) == ["node-1", "node-2"]
    assert not any(m.get("isLearner") for m in members)
    log = journal(node2, since)
    assert "as a learner" in log and "etcd member node-2 promoted to voter" in log
    started = re.search(r"Starting etcd to join cluster with members \[([^\]]*)\]", log)
    assert started, log[-2000:]
    assert sorted(started.group(1).split(", ")) == [
        f"node-1=https://{node1.address}:2380",
        f"node-2=https://{node2.address}:2380",
    ]
    # Promoted by the leader's server, not by itself (k3s manageLearners).
    assert "Promoted learner etcd member node-2" in journal(node1, since)
    nodes = https_get(testbed, url(node1, 6443, "/api/v1/nodes"), creds)
    assert nodes.status == 200
    ready = re.findall(r'"name": "(node-\d)".*?"type": "Ready", "status": "True"', nodes.body)
    assert sorted(ready) == ["node-1", "node-2"]
    # The joiner serves the same cluster: its apiserver accepts node-1's client certificate.
    assert https_get(testbed, url(node2, 6443, "/readyz"), creds).status == 200


def test_restart_with_data_ignores_server_and_keeps_the_member(
    testbed: Testbed, first: tuple[Machine, Credentials]
) -> None:
    node1, creds = first
    node2 = testbed.machine("node-2")
    before = {m["name"]: m["ID"] for m in etcd_members(node1)}
    # `server:` now names a server that does not answer: with etcd data it is not used.
    write_config(node2, config(node2, server=testbed.machine("node-3"), token=TOKEN))
    since = now(node2)
    sh(node2, "systemctl restart rke2-server", timeout=90)
    assert "bootstrap already complete" in journal(node2, since)
    assert {m["name"]: m["ID"] for m in etcd_members(node1)} == before
    assert https_get(testbed, url(node2, 6443, "/readyz"), creds).status == 200


def test_join_while_the_cluster_has_no_quorum_fails_on_etcd(
    testbed: Testbed, first: tuple[Machine, Credentials]
) -> None:
    node1, creds = first
    node2, node3 = testbed.machine("node-2"), testbed.machine("node-3")
    token = sh(node1, "cat /var/lib/rancher/rke2/server/node-token").strip()
    sh(node2, "systemctl stop rke2-server", timeout=60)  # one of two voters gone: no quorum
    since = now(node3)
    try:
        assert https_get(testbed, url(node1, 6443, "/readyz"), creds).status == 500
        write_config(node3, config(node3, server=node1, token=token))
        start(node3)
        log = wait_journal(node3, "start managed database: etcdserver:", since, timeout=40)
        assert "level=fatal" in log
        assert unit_state(node3) != "active"
    finally:
        stop_and_forget(node3)
        sh(node2, "systemctl start --no-block rke2-server")
        wait_active(node2)
        # A member add that timed out may still be applied once the quorum is back (etcd
        # gives no guarantee either way): an unstarted learner RKE2 would trip over next.
        remove_members(node1, ("node-3",))
    assert https_get(testbed, url(node1, 6443, "/readyz"), creds).status == 200
    assert sorted(m["name"] for m in etcd_members(node1)) == ["node-1", "node-2"]


def test_ingress_serves_rancher_only_after_its_helmchart(
    testbed: Testbed, first: tuple[Machine, Credentials]
) -> None:
    node1, creds = first
    node2 = testbed.machine("node-2")
    health = raw_get(testbed, node2, 80, node2.address, "/healthz")
    assert (health.status, health.body) == (200, "ok")
    assert health.headers.get("x-rke2ha-node") == "node-2"
    before = raw_get(testbed, node1, 443, HOSTNAME, "/ping")
    assert before.status == 404 and before.body == "default backend - 404"
    manifests = "/var/lib/rancher/rke2/server/manifests"
    wrong = rancher_manifests("other.example.test")
    done = node1.sh(f"cat > {manifests}/rancher.yaml", input=wrong)
    assert done.returncode == 0, done.stderr
    # The chart for another hostname gives this one nothing, however long it runs.
    time.sleep(RANCHER_DELAY + 3)
    assert raw_get(testbed, node1, 443, HOSTNAME, "/ping").status == 404
    done = node1.sh(f"cat > {manifests}/rancher.yaml", input=rancher_manifests(HOSTNAME))
    assert done.returncode == 0, done.stderr
    began = time.monotonic()
    ping = raw_get(testbed, node2, 443, HOSTNAME, "/ping")
    while ping.body != "pong" and time.monotonic() - began < 30:
        time.sleep(0.5)
        ping = raw_get(testbed, node2, 443, HOSTNAME, "/ping")
    # Deployed from node-1's manifests directory, served by node-2 as well: cluster-wide.
    assert (ping.status, ping.body) == (200, "pong"), ping
    TIMINGS.append(f"rke2 stand-in: Rancher /ping after {time.monotonic() - began:.1f}s")
    verified = raw_get(testbed, node2, 443, HOSTNAME, "/ping", ca=creds.ca)
    assert verified.status == 200 and HOSTNAME in verified.subject
    redirect = raw_get(testbed, node1, 80, HOSTNAME, "/dashboard/")
    assert redirect.status == 308
    assert redirect.headers["location"] == f"https://{HOSTNAME}/dashboard"
    # Rancher's websocket, opened the way `rke2ha check` opens it (the websockets client).
    script = (
        "import asyncio, ssl, sys\n"
        "from websockets.asyncio.client import connect\n"
        "async def main():\n"
        "    ctx = ssl._create_unverified_context()\n"
        "    async with connect(f'wss://{sys.argv[2]}/v3/subscribe', host=sys.argv[1],\n"
        "                       port=443, ssl=ctx, server_hostname=sys.argv[2]) as ws:\n"
        "        print(await asyncio.wait_for(ws.recv(), 5))\n"
        "asyncio.run(main())\n"
    )
    done = testbed.workstation.run([sys.executable, "-c", script, node2.address, HOSTNAME])
    assert done.returncode == 0, done.stderr
    assert '"node": "node-2"' in done.stdout


def _ingress_config(proxy_protocol: bool) -> str:
    """The ingress HelmChartConfig as RKE2's docs show it (rke2-ingress-nginx, kube-system)."""
    values = {"controller": {"config": {"use-proxy-protocol": str(proxy_protocol).lower()}}}
    doc = {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChartConfig",
        "metadata": {"name": "rke2-ingress-nginx", "namespace": "kube-system"},
        "spec": {"valuesContent": yaml.safe_dump(values)},
    }
    return yaml.safe_dump(doc)


def test_ingress_takes_proxy_protocol_from_its_helmchartconfig(
    testbed: Testbed, first: tuple[Machine, Credentials]
) -> None:
    node1 = first[0]
    node2 = testbed.machine("node-2")
    target = "/var/lib/rancher/rke2/server/manifests/rke2-ingress-nginx-config.yaml"
    proxy = f"PROXY TCP4 198.18.0.200 {node2.address} 40000 80"
    try:
        assert node1.sh(f"cat > {target}", input=_ingress_config(True)).returncode == 0
        began = time.monotonic()
        while time.monotonic() - began < 20:
            if raw_get(testbed, node2, 80, node2.address, "/healthz").status == 0:
                break
            time.sleep(0.5)
        # nginx with proxy_protocol closes a connection without the header, unanswered.
        assert raw_get(testbed, node2, 80, node2.address, "/healthz").status == 0
        proxied = raw_get(testbed, node2, 80, node2.address, "/healthz", proxy=proxy)
        assert (proxied.status, proxied.body) == (200, "ok")
        tls_proxy = proxy.replace(" 80", " 443")
        ping = raw_get(testbed, node2, 443, HOSTNAME, "/ping", proxy=tls_proxy)
        assert (ping.status, ping.body) == (200, "pong")
    finally:
        node1.sh(f"cat > {target}", input=_ingress_config(False))
    began = time.monotonic()
    while raw_get(testbed, node2, 80, node2.address, "/healthz").status != 200:
        assert time.monotonic() - began < 20, "the ingress kept expecting PROXY headers"
        time.sleep(0.5)


def test_two_joins_at_once_fail_on_etcd(
    testbed: Testbed, first: tuple[Machine, Credentials], installed: Path
) -> None:
    node1, _ = first
    node3 = testbed.machine("node-3")
    token = sh(node1, "cat /var/lib/rancher/rke2/server/node-token").strip()
    with testbed.extra_machine("node-4") as node4:
        upload(node4, installed)
        assert install(node4).returncode == 0
        joiners = (node3, node4)
        since = {m.name: now(m) for m in joiners}
        for machine in joiners:
            write_config(machine, config(machine, server=node1, token=token))
        # No promotion while both join (a tick between the two would let both in, and on a
        # loaded machine the two starts can be seconds apart): the first learner stays one,
        # so the second join meets it.
        sh(node1, f"echo {HELD_TICK} > {TICK_FILE}")
        threads = [threading.Thread(target=start, args=(m,)) for m in joiners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            deadline = time.monotonic() + 30
            refused: list[str] = []
            while time.monotonic() < deadline and not refused:
                refused = [
                    m.name
                    for m in joiners
                    if "too many learner members in cluster" in journal(m, since[m.name])
                ]
                time.sleep(0.3)
            assert refused, {m.name: journal(m, since[m.name])[-2000:] for m in joiners}
        finally:
            # Stopped first, so the refused one cannot retry (Restart=always) into the
            # cluster behind our back; at most one of them is a voter, so node-1 and node-2
            # keep the quorum that removing members needs. A member left behind dead would
            # make etcd refuse every later join ("unhealthy cluster").
            for machine in joiners:
                stop_and_forget(machine)
            remove_members(node1, ("node-3", "node-4"))
            node4.sh("/usr/local/bin/rke2-uninstall.sh >/dev/null 2>&1")
            sh(node1, f"echo {SHORT_TICK} > {TICK_FILE}")


def test_third_server_joins_and_three_nodes_are_ready(
    testbed: Testbed, first: tuple[Machine, Credentials]
) -> None:
    node1, creds = first
    node3 = testbed.machine("node-3")
    token = sh(node1, "cat /var/lib/rancher/rke2/server/node-token").strip()
    write_config(node3, config(node3, server=node1, token=token))
    sh(node1, f"echo {SHORT_TICK} > {TICK_FILE}")
    since = now(node1)
    start(node3)
    TIMINGS.append(f"rke2 stand-in: third server joined in {wait_active(node3, 60):.1f}s")
    assert "Promoted learner etcd member node-3" in journal(node1, since)
    members = etcd_members(node1)
    assert sorted(m["name"] for m in members) == ["node-1", "node-2", "node-3"]
    assert not any(m.get("isLearner") for m in members)
    nodes = https_get(testbed, url(node3, 6443, "/api/v1/nodes"), creds)
    ready = re.findall(r'"name": "(node-\d)".*?"type": "Ready", "status": "True"', nodes.body)
    # node-4 of the parallel-join test left its Node object behind, as Kubernetes keeps a
    # Node until it is deleted; it is not Ready.
    assert sorted(ready) == ["node-1", "node-2", "node-3"]


def test_uninstall_leaves_no_rke2(testbed: Testbed, first: tuple[Machine, Credentials]) -> None:
    for name in ("node-1", "node-2", "node-3"):
        machine = testbed.machine(name)
        done = machine.sh("/usr/local/bin/rke2-uninstall.sh", timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        left = machine.sh(
            "ls -d /usr/local/bin/rke2* /usr/local/lib/systemd/system/rke2* /etc/rancher/rke2"
            " /var/lib/rancher/rke2 /etc/systemd/system/rke2* 2>/dev/null; true"
        ).stdout
        assert left == "", f"{name}: {left}"
        assert machine.sh("pgrep -f '^/usr/bin/etcd --name='").returncode == 1
        assert unit_state(machine) == "inactive"
        assert "could not be found" in machine.sh("systemctl status rke2-server").stderr
