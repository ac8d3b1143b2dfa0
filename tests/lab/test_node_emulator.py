"""The node emulator as a real subprocess on 127.0.40.x, hit with real clients.

curl (with --cacert and --resolve) for HTTP and TLS, Python's ssl for the handshake
details, the `websockets` library for `/v3/subscribe`, signals for join/freeze/stop.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.lab.conftest import (
    API,
    HOSTNAME,
    HTTP,
    HTTPS,
    SUP,
    NodeProcess,
    curl,
    lab_spec,
    spawn_node,
    write_spec,
)
from websockets.asyncio.client import connect

from rke2ha.lab.ca import LabCA
from rke2ha.lab.material import LabPki, ensure_lab_material
from rke2ha.specfile import load_spec

L4_ADDRESSES = ["127.0.40.11", "127.0.40.12", "127.0.40.13"]


class Lab:
    """A spec folder and what a client needs: the CA file and the health token."""

    def __init__(self, directory: Path, spec: dict[str, Any]) -> None:
        self.spec_file = write_spec(directory, spec)
        self.directory = directory
        # The lab orchestration prepares the CA and certificates before spawning nodes.
        ensure_lab_material(load_spec(self.spec_file))

    @property
    def ca(self) -> Path:
        return self.directory / ".rke2ha" / "lab" / "pki" / "ca.crt"

    @property
    def token(self) -> str:
        return (self.directory / ".rke2ha" / "secrets" / "lab-health-token").read_text().strip()


@pytest.fixture(scope="module")
def l4_lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab(tmp_path_factory.mktemp("l4"), lab_spec(L4_ADDRESSES))


@pytest.fixture(scope="module")
def ready_node(l4_lab: Lab) -> Iterator[NodeProcess]:
    node = spawn_node(l4_lab.spec_file, "node-1")
    yield node
    node.stop()


def https(node: NodeProcess, port: int, path: str, lab: Lab, **kwargs: Any) -> Any:
    """curl https://HOSTNAME:port/path, resolved to the node's address, verified with the CA."""
    return curl(
        f"https://{HOSTNAME}:{port}{path}",
        cacert=lab.ca,
        resolve=f"{HOSTNAME}:{port}:{node.address}",
        **kwargs,
    )


def test_emulator_listens_quickly(ready_node: NodeProcess) -> None:
    # The whole lab has to be up and verified in < 5 s. Measured from spawn to every port
    # bound: ~0.5 s on an idle 2-core machine, 1.3 s (max 2.6 s) at load average 7; the
    # bound catches a heavy import creeping onto the node path, not scheduler noise.
    assert ready_node.spawn_seconds < 4.0, ready_node.spawn_seconds
    assert ready_node.announce["ports"] == {"80": HTTP, "443": HTTPS, "6443": API, "9345": SUP}
    assert ready_node.announce["state"] == "ready"
    for port in (HTTP, HTTPS, API, SUP):
        with socket.create_connection((ready_node.address, port), timeout=2):
            pass


def test_ingress_port_80(ready_node: NodeProcess) -> None:
    base = f"http://{ready_node.address}:{HTTP}"
    for host in ("anything.example.com", ready_node.address):
        health = curl(f"{base}/healthz", headers=(f"Host: {host}",))
        assert (health.status, health.text) == (200, "ok")
        assert health.headers["x-rke2ha-node"] == "node-1"
    # Rancher is installed: its hostname has its own server, which redirects (even /healthz).
    for path in ("/dashboard/?a=1&b=2", "/healthz"):
        redirect = curl(f"{base}{path}", headers=(f"Host: {HOSTNAME}",))
        assert redirect.status == 308
        assert redirect.headers["location"] == f"https://{HOSTNAME}{path}"
    other = curl(f"{base}/", headers=("Host: grafana.example.com",))
    assert (other.status, other.text) == (404, "default backend - 404")


def test_following_the_redirect_reaches_rancher_over_verified_tls(
    l4_lab: Lab, ready_node: NodeProcess
) -> None:
    # The redirect names https://host/... (port 443, as ingress-nginx writes it); the lab's
    # 443 is HTTPS, so curl is told where 443 is.
    resolves = (
        "--resolve",
        f"{HOSTNAME}:{HTTP}:{ready_node.address}",
        "--connect-to",
        f"{HOSTNAME}:443:{ready_node.address}:{HTTPS}",
        "-L",
    )
    result = curl(f"http://{HOSTNAME}:{HTTP}/ping", cacert=l4_lab.ca, extra=resolves)
    assert (result.exit_code, result.status, result.text) == (0, 200, "pong")


def test_rancher_stand_in_on_443(l4_lab: Lab, ready_node: NodeProcess) -> None:
    ping = https(ready_node, HTTPS, "/ping", l4_lab)
    assert (ping.exit_code, ping.status, ping.text) == (0, 200, "pong")
    assert ping.headers["x-rke2ha-node"] == "node-1"
    assert https(ready_node, HTTPS, "/healthz", l4_lab).status == 200
    other = https(ready_node, HTTPS, "/ping", l4_lab, headers=("Host: other.example.com",))
    assert other.status == 404


def test_tls_certificates_verify_against_the_lab_ca(l4_lab: Lab, ready_node: NodeProcess) -> None:
    # Without the lab CA, curl refuses the chain (exit 60: peer certificate not trusted).
    untrusted = curl(
        f"https://{HOSTNAME}:{HTTPS}/ping", resolve=f"{HOSTNAME}:{HTTPS}:{ready_node.address}"
    )
    assert untrusted.exit_code == 60, untrusted.stderr
    context = ssl.create_default_context(cafile=str(l4_lab.ca))
    with (
        socket.create_connection((ready_node.address, HTTPS), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        version = tls.version()
        assert version in ("TLSv1.2", "TLSv1.3")
        san = dict(tls.getpeercert() or {}).get("subjectAltName", ())
        assert ("DNS", HOSTNAME) in san
    with (
        socket.create_connection((ready_node.address, HTTPS), timeout=3) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
    ):
        context.wrap_socket(raw, server_hostname="wrong.example.com")
    # 6443 and 9345 carry the node's own certificate: valid for its IP and the hostname.
    for port in (API, SUP):
        by_ip = curl(f"https://{ready_node.address}:{port}/livez", cacert=l4_lab.ca)
        assert by_ip.exit_code == 0, by_ip.stderr
        assert https(ready_node, port, "/ping", l4_lab).exit_code == 0
    # TLS 1.1 and older are refused.
    old = curl(
        f"https://{HOSTNAME}:{HTTPS}/ping",
        cacert=l4_lab.ca,
        resolve=f"{HOSTNAME}:{HTTPS}:{ready_node.address}",
        extra=("--tls-max", "1.1"),
    )
    assert old.exit_code != 0


def test_apiserver_needs_the_token(l4_lab: Lab, ready_node: NodeProcess) -> None:
    for path in ("/readyz", "/livez", "/version"):
        anonymous = https(ready_node, API, path, l4_lab)
        assert anonymous.status == 401, path
        status = json.loads(anonymous.body)
        assert (status["kind"], status["code"]) == ("Status", 401)
        wrong = https(ready_node, API, path, l4_lab, headers=("Authorization: Bearer nope",))
        assert wrong.status == 401
    auth = (f"Authorization: Bearer {l4_lab.token}",)
    for path in ("/readyz", "/livez"):
        ok = https(ready_node, API, path, l4_lab, headers=auth)
        assert (ok.status, ok.text) == (200, "ok"), path
    version = https(ready_node, API, "/version", l4_lab, headers=auth)
    assert version.status == 200 and json.loads(version.body)["gitVersion"].startswith("v1.")


def test_supervisor(l4_lab: Lab, ready_node: NodeProcess) -> None:
    ping = https(ready_node, SUP, "/ping", l4_lab)
    assert (ping.status, ping.text) == (200, "pong")
    cacerts = https(ready_node, SUP, "/cacerts", l4_lab)
    assert cacerts.status == 200 and cacerts.body == l4_lab.ca.read_bytes()


async def _subscribe(
    uri: str, address: str, port: int, tls: ssl.SSLContext | None, headers: dict[str, str]
) -> tuple[str | None, list[dict[str, Any]], dict[str, Any], float]:
    async with connect(
        uri,
        ssl=tls,
        host=address,
        port=port,
        proxy=None,
        open_timeout=5,
        additional_headers=headers,
    ) as ws:
        started = time.monotonic()
        events = [json.loads(await asyncio.wait_for(ws.recv(), 2)) for _ in range(4)]
        elapsed = time.monotonic() - started
        await ws.send("hello from the test")
        echo: dict[str, Any] = {}
        for _ in range(20):
            message = json.loads(await asyncio.wait_for(ws.recv(), 2))
            if message["name"] == "echo":
                echo = message
                break
        assert ws.response is not None
        return ws.response.headers.get("X-Rke2ha-Node"), events, echo, elapsed


def test_websocket_streams_events_and_echoes(l4_lab: Lab, ready_node: NodeProcess) -> None:
    tls = ssl.create_default_context(cafile=str(l4_lab.ca))
    node, events, echo, elapsed = asyncio.run(
        _subscribe(f"wss://{HOSTNAME}:{HTTPS}/v3/subscribe", ready_node.address, HTTPS, tls, {})
    )
    assert node == "node-1"
    assert [e["counter"] for e in events] == [1, 2, 3, 4]
    assert {e["node"] for e in events} == {"node-1"}
    # One event every 200 ms: the 3 intervals after the first take about 0.6 s.
    assert 0.45 < elapsed < 2.5, elapsed
    assert echo == {"name": "echo", "node": "node-1", "data": "hello from the test"}


# ---- layer 7 and anonymous health -----------------------------------------------------------


@pytest.fixture(scope="module")
def l7_lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    spec = lab_spec(
        ["127.0.40.21", "127.0.40.22", "127.0.40.23"],
        ingress="traefik",
        load_balancer={"layer": 7},
        rke2={"anonymous_health": True},
    )
    return Lab(tmp_path_factory.mktemp("l7"), spec)


@pytest.fixture(scope="module")
def l7_node(l7_lab: Lab) -> Iterator[NodeProcess]:
    node = spawn_node(l7_lab.spec_file, "node-2")
    yield node
    node.stop()


def test_anonymous_health_opens_livez_and_readyz_only(l7_lab: Lab, l7_node: NodeProcess) -> None:
    for path in ("/readyz", "/livez"):
        result = https(l7_node, API, path, l7_lab)
        assert (result.status, result.text) == (200, "ok"), path
    assert https(l7_node, API, "/version", l7_lab).status == 401
    wrong = https(l7_node, API, "/readyz", l7_lab, headers=("Authorization: Bearer nope",))
    assert wrong.status == 401


@pytest.fixture(scope="module")
def l7_trusting_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A layer 7 lab's node fed the ingress config `rke2ha render` writes for its spec."""
    from rke2ha.render.ingress import render_ingress_config

    spec = lab_spec(
        ["127.0.40.31", "127.0.40.32", "127.0.40.33"],
        ingress="traefik",
        load_balancer={"layer": 7},
    )
    lab = Lab(tmp_path_factory.mktemp("l7-trusting"), spec)
    config = lab.directory / "ingress-helmchartconfig.yaml"
    config.write_text(render_ingress_config(load_spec(lab.spec_file), "lab.yaml"))
    assert "trustedIPs" in config.read_text()
    node = spawn_node(lab.spec_file, "node-3", "--ingress-config", str(config))
    yield node
    node.stop()


def test_layer7_without_the_ingress_config_rancher_redirects_https_to_itself(
    l7_lab: Lab, l7_node: NodeProcess
) -> None:
    base = f"http://{l7_node.address}:{HTTP}"
    host = f"Host: {HOSTNAME}"
    # Rancher serves /ping on plain http whatever it is told...
    served = curl(f"{base}/ping", headers=(host, "X-Forwarded-Proto: https"))
    assert (served.status, served.text) == (200, "pong")
    assert served.headers["x-rke2ha-node"] == "node-2"
    # ... but the ingress told it "http": anything else is sent back to https, the same
    # URL the load balancer's client asked for (rancher/rancher#31071).
    redirected = curl(f"{base}/dashboard/", headers=(host, "X-Forwarded-Proto: https"))
    assert redirected.status == 302
    assert redirected.headers["location"] == f"https://{HOSTNAME}/dashboard/"
    # Traefik's /ping lives on its unpublished `traefik` entry point: port 80 has no ping.
    health = curl(f"{base}/ping", headers=("Host: elsewhere.test",))
    assert (health.status, health.text.strip()) == (404, "404 page not found")


def test_layer7_with_the_rendered_ingress_config_serves_rancher(
    l7_trusting_node: NodeProcess,
) -> None:
    base = f"http://{l7_trusting_node.address}:{HTTP}"
    host = f"Host: {HOSTNAME}"
    served = curl(f"{base}/dashboard/", headers=(host, "X-Forwarded-Proto: https"))
    assert served.status == 200
    told_http = curl(f"{base}/dashboard/", headers=(host, "X-Forwarded-Proto: http"))
    assert told_http.status == 302
    node, events, echo, _ = asyncio.run(
        _subscribe(
            f"ws://{HOSTNAME}:{HTTP}/v3/subscribe",
            l7_trusting_node.address,
            HTTP,
            None,
            {"X-Forwarded-Proto": "https"},
        )
    )
    assert node == "node-3" and events[0]["counter"] == 1 and echo["data"] == "hello from the test"


# ---- PROXY protocol ---------------------------------------------------------------------------

PROXY_CONFIG = """apiVersion: helm.cattle.io/v1
kind: HelmChartConfig
metadata: {name: rke2-ingress-nginx, namespace: kube-system}
spec:
  valuesContent: |
    controller:
      config: {use-proxy-protocol: "true"}
"""


@pytest.fixture(scope="module")
def proxy_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, NodeProcess]]:
    lab = Lab(
        tmp_path_factory.mktemp("proxy"), lab_spec(["127.0.40.61", "127.0.40.62", "127.0.40.63"])
    )
    config = lab.directory / "ingress-helmchartconfig.yaml"
    config.write_text(PROXY_CONFIG)
    node = spawn_node(lab.spec_file, "node-1", "--ingress-config", str(config))
    yield lab, node
    node.stop()


def test_with_use_proxy_protocol_a_connection_without_the_header_gets_no_answer(
    proxy_node: tuple[Lab, NodeProcess],
) -> None:
    lab, node = proxy_node
    # nginx with `listen ... proxy_protocol` closes such a connection: curl sees no reply
    # (52) on 80 and a TLS handshake cut short (35) on 443.
    plain = curl(f"http://{node.address}:{HTTP}/healthz")
    assert (plain.exit_code, plain.status) == (52, 0), plain.stderr
    tls = https(node, HTTPS, "/ping", lab)
    assert tls.exit_code == 35 and tls.status == 0, tls.stderr
    # With the header (curl --haproxy-protocol sends PROXY v1) both ports answer, and the
    # header's destination port 443 makes the Rancher host's request count as https.
    health = curl(f"http://{node.address}:{HTTP}/healthz", extra=("--haproxy-protocol",))
    assert (health.exit_code, health.status, health.text) == (0, 200, "ok")
    ping = https(node, HTTPS, "/ping", lab, extra=("--haproxy-protocol",))
    assert (ping.exit_code, ping.status, ping.text) == (0, 200, "pong")
    # The API ports never expect the header.
    assert https(node, API, "/livez", lab).status == 401


# ---- states: joining, frozen, stopped -------------------------------------------------------


def _wait_state(node: NodeProcess, state: str) -> None:
    event = node.next_line(5)
    assert (event["event"], event["state"]) == ("state", state), event


def test_join_via_signals(l4_lab: Lab, node_processes: Callable[..., NodeProcess]) -> None:
    node = node_processes(l4_lab.spec_file, "node-2")
    auth = (f"Authorization: Bearer {l4_lab.token}",)
    assert https(node, API, "/readyz", l4_lab, headers=auth).status == 200

    async def hold_websocket() -> tuple[int | None, str]:
        tls = ssl.create_default_context(cafile=str(l4_lab.ca))
        async with connect(
            f"wss://{HOSTNAME}:{HTTPS}/v3/subscribe",
            ssl=tls,
            host=node.address,
            port=HTTPS,
            proxy=None,
            open_timeout=5,
        ) as ws:
            await ws.recv()
            node.signal(signal.SIGUSR1)  # join: the ingress goes away, and its websockets
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 3)
            except Exception:
                pass
            assert ws.close_code is not None
            return ws.close_code, ws.close_reason or ""

    close_code, reason = asyncio.run(hold_websocket())
    assert close_code == 1001 and "going away" in reason
    _wait_state(node, "joining")
    readyz = https(node, API, "/readyz", l4_lab, headers=auth)
    assert readyz.status == 500 and "readyz check failed" in readyz.text
    assert https(node, API, "/livez", l4_lab, headers=auth).status == 200
    assert https(node, API, "/readyz", l4_lab).status == 401  # anonymous: still 401 first
    assert https(node, SUP, "/ping", l4_lab).text == "pong"
    refused = curl(f"http://{node.address}:{HTTP}/healthz")
    assert refused.exit_code == 7, refused  # connection refused
    assert https(node, HTTPS, "/ping", l4_lab).exit_code == 7

    node.signal(signal.SIGUSR2)
    _wait_state(node, "ready")
    assert https(node, API, "/readyz", l4_lab, headers=auth).status == 200
    assert curl(f"http://{node.address}:{HTTP}/healthz").status == 200
    assert https(node, HTTPS, "/ping", l4_lab).text == "pong"


def test_start_joining(l4_lab: Lab, node_processes: Callable[..., NodeProcess]) -> None:
    node = node_processes(l4_lab.spec_file, "node-3", "--state", "joining")
    assert node.announce["state"] == "joining"
    auth = (f"Authorization: Bearer {l4_lab.token}",)
    assert https(node, API, "/readyz", l4_lab, headers=auth).status == 500
    assert https(node, SUP, "/ping", l4_lab).status == 200
    assert curl(f"http://{node.address}:{HTTP}/healthz").exit_code == 7
    node.signal(signal.SIGUSR2)
    _wait_state(node, "ready")
    assert https(node, API, "/readyz", l4_lab, headers=auth).status == 200


def test_frozen_node_hangs_then_thaws(
    l7_lab: Lab, node_processes: Callable[..., NodeProcess]
) -> None:
    node = node_processes(l7_lab.spec_file, "node-3")
    assert https(node, SUP, "/ping", l7_lab).status == 200
    node.signal(signal.SIGSTOP)
    started = time.monotonic()
    hung = https(node, SUP, "/ping", l7_lab, max_time=1.0)
    assert hung.exit_code == 28, hung  # operation timed out: accepted, never answered
    assert 0.9 < time.monotonic() - started < 5
    plain = curl(f"http://{node.address}:{HTTP}/ping", max_time=0.5)
    assert plain.exit_code == 28
    node.signal(signal.SIGCONT)
    thawed = https(node, SUP, "/ping", l7_lab)
    assert (thawed.status, thawed.text) == (200, "pong")


def test_sigterm_exits_cleanly_and_frees_the_ports(
    l7_lab: Lab, node_processes: Callable[..., NodeProcess]
) -> None:
    node = node_processes(l7_lab.spec_file, "node-1")
    started = time.monotonic()
    node.signal(signal.SIGTERM)
    assert node.proc.wait(5) == 0
    assert time.monotonic() - started < 2
    assert node.next_line(1)["event"] == "stopped"
    for port in (HTTP, HTTPS, API, SUP):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((node.address, port), timeout=1).close()


def test_a_planted_expired_certificate_is_served_as_it_is(
    tmp_path: Path, node_processes: Callable[..., NodeProcess]
) -> None:
    # What the later "expired certificate" check test needs: the emulator does not renew.
    lab = Lab(tmp_path, lab_spec(["127.0.40.51", "127.0.40.52", "127.0.40.53"]))
    pki = LabPki(lab.directory / ".rke2ha" / "lab" / "pki")
    now = datetime.now(UTC)
    LabCA.load(pki.ca_cert, pki.ca_key).issue(
        [HOSTNAME], not_before=now - timedelta(days=90), not_after=now - timedelta(days=1)
    ).save(pki.ingress_cert, pki.ingress_key)
    node = node_processes(lab.spec_file, "node-1")
    expired = https(node, HTTPS, "/ping", lab)
    assert expired.exit_code == 60 and "expired" in expired.stderr, expired
    context = ssl.create_default_context(cafile=str(lab.ca))
    with (
        socket.create_connection((node.address, HTTPS), timeout=3) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="expired"),
    ):
        context.wrap_socket(raw, server_hostname=HOSTNAME)
    # The other ports keep their valid node certificate.
    assert https(node, SUP, "/ping", lab).text == "pong"
