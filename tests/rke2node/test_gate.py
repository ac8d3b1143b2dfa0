"""The readiness gate against a real TLS server on loopback that asks for the client
certificate: /ping, /readyz and the node's Ready condition, and the hostname check."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rke2ha.rke2node import gate
from rke2ha.rke2node.kubeconfig import Credentials

ADDRESS = "127.0.118.1"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str, key: Any, issuer: tuple[x509.Name, Any] | None, **kw: Any
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
    )
    if "sans" in kw:
        builder = builder.add_extension(x509.SubjectAlternativeName(kw["sans"]), False)
    if "usage" in kw:
        builder = builder.add_extension(x509.ExtendedKeyUsage([kw["usage"]]), False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Cluster:
    """A CA, a server certificate for ADDRESS and `rancher.test`, a client certificate."""

    def __init__(self, tmp: Path) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert("server-ca", ca_key, None)
        issuer = (self.ca.subject, ca_key)
        server_key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.IPAddress(ipaddress.ip_address(ADDRESS)), x509.DNSName("rancher.test")]
        server = _cert("kube-apiserver", server_key, issuer, sans=sans,
                       usage=ExtendedKeyUsageOID.SERVER_AUTH)  # fmt: skip
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = _cert("system:admin", client_key, issuer, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        self.creds = Credentials(_pem(self.ca), _pem(client), _key(client_key))
        (tmp / "server.pem").write_bytes(_pem(server) + _pem(self.ca))
        (tmp / "server.key").write_bytes(_key(server_key))
        (tmp / "ca.pem").write_bytes(_pem(self.ca))
        self.tmp = tmp
        self.node_ready = "False"
        self.readyz = 503
        self.client_seen: list[bool] = []
        self.other_nodes: list[dict[str, Any]] = []

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tmp / "server.pem", self.tmp / "server.key")
        context.load_verify_locations(self.tmp / "ca.pem")
        context.verify_mode = ssl.CERT_OPTIONAL
        return context


def _serve(cluster: Cluster, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            has_client = bool(self.connection.getpeercert())  # type: ignore[attr-defined]
            cluster.client_seen.append(has_client)
            if self.path == "/ping":
                status, body = 200, "pong"
            elif not has_client:
                status, body = 401, "Unauthorized"
            elif self.path == "/readyz":
                status, body = cluster.readyz, "ok" if cluster.readyz == 200 else "[-]etcd"
            elif self.path == "/api/v1/nodes":
                conditions = [{"type": "Ready", "status": cluster.node_ready}]
                item = {"metadata": {"name": "node-1"}, "status": {"conditions": conditions}}
                items = [*cluster.other_nodes, item]
                status, body = 200, json.dumps({"kind": "NodeList", "items": items})
            else:
                status, body = 404, "not found"
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((ADDRESS, port), Handler)
    server.socket = cluster.context().wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path)
    servers = [_serve(made, 9345), _serve(made, 6443)]
    yield made
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_gate_waits_for_readyz_then_the_node_then_passes(cluster):
    client = gate.Client(cluster.creds)
    assert "6443 /readyz: HTTP 503" in (gate.waiting_for(client, ADDRESS, "node-1") or "")
    cluster.readyz = 200
    assert gate.waiting_for(client, ADDRESS, "node-1") == "node node-1 is not Ready yet"
    assert gate.waiting_for(client, ADDRESS, "node-2") == "node node-2 is not registered yet"
    cluster.node_ready = "True"
    assert gate.waiting_for(client, ADDRESS, "node-1") is None
    # /readyz and the node were asked with the client certificate.
    assert cluster.client_seen.count(True) >= 4


def test_a_closed_supervisor_port_is_what_it_waits_for(cluster):
    client = gate.Client(cluster.creds)
    said = gate.waiting_for(client, "127.0.118.2", "node-1")
    assert said is not None and said.startswith("9345 /ping:")


def test_hostname_in_the_certificate_passes_and_a_missing_one_is_a_certificate_error(cluster):
    cluster.readyz = 200
    client = gate.Client(cluster.creds)
    assert gate.via_hostname(client, ADDRESS, "rancher.test") is None
    said = gate.via_hostname(client, ADDRESS, "rancher.example.com") or ""
    assert said.startswith("certificate not accepted")


def test_another_ca_is_refused(cluster, tmp_path):
    other = Cluster(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path)
    said = gate.waiting_for(gate.Client(other.creds), ADDRESS, "node-1") or ""
    assert "certificate not accepted" in said


def test_a_node_list_larger_than_64_kib_is_read_whole(cluster, monkeypatch):
    cluster.readyz = 200
    cluster.node_ready = "True"
    padding = {"images": [{"names": ["registry.example/" + "x" * 200]}] * 20}
    cluster.other_nodes = [
        {"metadata": {"name": f"worker-{i}"}, "status": padding} for i in range(40)
    ]
    assert len(json.dumps(cluster.other_nodes)) > 64 * 1024
    client = gate.Client(cluster.creds)
    assert gate.waiting_for(client, ADDRESS, "node-1") is None
    # Beyond the bound: a clear error, not a truncated list.
    monkeypatch.setattr(gate, "MAX_BODY", 64 * 1024)
    said = gate.waiting_for(client, ADDRESS, "node-1") or ""
    assert said == f"/api/v1/nodes: /api/v1/nodes answered more than {64 * 1024} bytes"
