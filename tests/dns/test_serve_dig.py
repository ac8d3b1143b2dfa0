"""`rke2ha dns serve` as a real subprocess, asked by Debian's `dig` over UDP and TCP."""

from __future__ import annotations

import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
import yaml
from tests.conftest import free_port
from tests.dns.conftest import BASE_SPEC, LB_HOSTS, Running, dig, flags, section
from tests.support.certs import write_self_signed

TRANSPORTS = [pytest.param((), id="udp"), pytest.param(("+tcp",), id="tcp")]


@pytest.fixture
def server(write_spec: Callable[..., Path], serve: Callable[..., Running]) -> Running:
    return serve(write_spec())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_record_is_authoritative_without_recursion(
    server: Running, transport: tuple[str, ...]
) -> None:
    data = dig(server.host, server.port, "rancher.example.com", "A", *transport)
    assert data["status"] == "NOERROR"
    assert data["_protocol"] == ("TCP" if transport else "UDP")
    assert "aa" in flags(data) and "ra" not in flags(data)
    assert section(data, "ANSWER") == ["rancher.example.com. 60 IN A 127.0.20.10"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_name_is_nxdomain_with_soa(server: Running, transport: tuple[str, ...]) -> None:
    data = dig(server.host, server.port, "nope.example.com", "A", *transport)
    assert data["status"] == "NXDOMAIN"
    assert "aa" in flags(data)
    assert not section(data, "ANSWER")
    [soa] = section(data, "AUTHORITY")
    assert soa.startswith("example.com. 60 IN SOA ns1.example.com. hostmaster.example.com. ")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_other_type_is_nodata_with_soa(server: Running, transport: tuple[str, ...]) -> None:
    data = dig(server.host, server.port, "rancher.example.com", "MX", *transport)
    assert data["status"] == "NOERROR"
    assert not section(data, "ANSWER")
    assert " IN SOA " in section(data, "AUTHORITY")[0]
    # The hostname's parent of the ownership name exists: AAAA is NODATA too, not NXDOMAIN.
    aaaa = dig(server.host, server.port, "rancher.example.com", "AAAA", *transport)
    assert aaaa["status"] == "NOERROR" and not section(aaaa, "ANSWER")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_outside_the_zone_is_refused(server: Running, transport: tuple[str, ...]) -> None:
    for name in ("example.org", "com", "rancher.example.com.evil.test"):
        data = dig(server.host, server.port, name, "A", *transport)
        assert data["status"] == "REFUSED", name
        assert "aa" not in flags(data) and "ra" not in flags(data)
        assert not section(data, "ANSWER")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_soa_ns_and_ownership_txt(server: Running, transport: tuple[str, ...]) -> None:
    soa = dig(server.host, server.port, "example.com", "SOA", *transport)
    assert section(soa, "ANSWER")[0].startswith("example.com. 60 IN SOA ns1.example.com. ")
    ns = dig(server.host, server.port, "example.com", "NS", *transport)
    assert section(ns, "ANSWER") == ["example.com. 60 IN NS ns1.example.com."]
    txt = dig(server.host, server.port, "_rke2ha.rancher.example.com", "TXT", *transport)
    assert section(txt, "ANSWER") == [
        '_rke2ha.rancher.example.com. 60 IN TXT "heritage=rke2ha,rke2ha/cluster=prod"'
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cname_record(
    write_spec: Callable[..., Path], serve: Callable[..., Running], transport: tuple[str, ...]
) -> None:
    spec = write_spec(
        {"load_balancer": {"address": "lb-1.elb.example.net"}, "dns": {"record": "CNAME"}}
    )
    running = serve(spec)
    data = dig(running.host, running.port, "rancher.example.com", "A", *transport)
    assert data["status"] == "NOERROR" and "aa" in flags(data)
    assert section(data, "ANSWER") == ["rancher.example.com. 60 IN CNAME lb-1.elb.example.net."]
    direct = dig(running.host, running.port, "rancher.example.com", "CNAME", *transport)
    assert section(direct, "ANSWER") == section(data, "ANSWER")


def test_udp_answer_too_big_is_truncated_and_tcp_gets_it_whole(
    write_spec: Callable[..., Path], serve: Callable[..., Running]
) -> None:
    extra = LB_HOSTS[1:41]  # 41 addresses: ~700 bytes of answer, over 512
    spec = write_spec({"load_balancer": {"extra_addresses": extra}})
    # Health probes go to a port where nothing listens: every address is down, and the
    # server fails open and serves all of them.
    running = serve(spec, "--health-port", str(free_port(LB_HOSTS[0])))
    udp = dig(running.host, running.port, "rancher.example.com", "A", "+bufsize=512", "+ignore")
    assert udp["_protocol"] == "UDP"
    assert "tc" in flags(udp)
    assert not section(udp, "ANSWER")
    retried = dig(running.host, running.port, "rancher.example.com", "A", "+bufsize=512")
    assert retried["_protocol"] == "TCP"  # dig saw TC and asked again over TCP
    assert "tc" not in flags(retried)
    assert len(section(retried, "ANSWER")) == 41
    # Without EDNS0 the limit is 512 bytes too; a big EDNS buffer takes it over UDP.
    plain = dig(running.host, running.port, "rancher.example.com", "A", "+noedns", "+ignore")
    assert "tc" in flags(plain)
    big = dig(running.host, running.port, "rancher.example.com", "A", "+bufsize=4096")
    assert big["_protocol"] == "UDP" and len(section(big, "ANSWER")) == 41
    # Several addresses: the TTL is short so clients follow health changes.
    assert all(" 10 IN A " in line for line in section(big, "ANSWER"))


def test_edns_is_honoured(server: Running) -> None:
    with_edns = dig(server.host, server.port, "rancher.example.com", "A", "+bufsize=1400")
    assert with_edns["OPT_PSEUDOSECTION"]["EDNS"]["udp"] == 1232
    without = dig(server.host, server.port, "rancher.example.com", "A", "+noedns")
    assert "OPT_PSEUDOSECTION" not in without
    assert section(without, "ANSWER") == ["rancher.example.com. 60 IN A 127.0.20.10"]


def test_axfr_refused_unless_allowed(
    write_spec: Callable[..., Path], serve: Callable[..., Running]
) -> None:
    refused = serve(write_spec())
    data = dig(refused.host, refused.port, "example.com", "AXFR")
    assert data["status"] == "REFUSED" and not section(data, "ANSWER")
    allowed = serve(write_spec({"dns": {"builtin": {"axfr_allow": ["127.0.0.0/8"]}}}, "b.yaml"))
    data = dig(allowed.host, allowed.port, "example.com", "AXFR")
    answer = section(data, "ANSWER")
    assert data["status"] == "NOERROR"
    assert " IN SOA " in answer[0] and " IN SOA " in answer[-1]
    assert "rancher.example.com. 60 IN A 127.0.20.10" in answer
    # Over UDP a transfer is refused even for an allowed client.
    # (dig always transfers over TCP, so this one query is sent with dnspython.)
    query = dns.message.make_query("example.com", "AXFR")
    udp = dns.query.udp(query, allowed.host, port=allowed.port, timeout=2)
    assert udp.rcode() == dns.rcode.REFUSED


def test_sighup_reloads_and_keeps_serving_on_a_broken_spec(
    write_spec: Callable[..., Path], serve: Callable[..., Running]
) -> None:
    spec = write_spec()
    running = serve(spec)
    serial1 = section(dig(running.host, running.port, "example.com", "SOA"), "ANSWER")[0]
    document: dict[str, Any] = yaml.safe_load(spec.read_text())
    document["load_balancer"]["address"] = "127.0.20.11"
    spec.write_text(yaml.safe_dump(document))
    running.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        answer = section(dig(running.host, running.port, "rancher.example.com", "A"), "ANSWER")
        if answer == ["rancher.example.com. 60 IN A 127.0.20.11"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer == ["rancher.example.com. 60 IN A 127.0.20.11"]
    serial2 = section(dig(running.host, running.port, "example.com", "SOA"), "ANSWER")[0]
    assert int(serial2.split()[6]) > int(serial1.split()[6])  # secondaries see a change
    spec.write_text("name: [this is not a spec\n")
    running.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    answer = section(dig(running.host, running.port, "rancher.example.com", "A"), "ANSWER")
    assert answer == ["rancher.example.com. 60 IN A 127.0.20.11"]
    assert running.proc.poll() is None
    assert "reload failed" in running.stop()


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # Like ingress-nginx: /healthz lives in the catch-all server; the Rancher host has
        # its own server (308 to https once Rancher's TLS Ingress exists).
        ok = self.path == "/healthz" and self.headers.get("Host") != "rancher.example.com"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def healthy_lb() -> Iterator[tuple[str, int]]:
    """An HTTP server on one LB address answering the ingress health path."""
    host = LB_HOSTS[1]
    httpd = ThreadingHTTPServer((host, 0), _Healthz)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield host, int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def test_only_healthy_load_balancer_addresses_are_served(
    write_spec: Callable[..., Path], serve: Callable[..., Running], healthy_lb: tuple[str, int]
) -> None:
    host, port = healthy_lb
    spec = write_spec(
        {
            "load_balancer": {
                "address": LB_HOSTS[0],  # nothing listens there: down
                "extra_addresses": [host],
                "health": {"interval": "100ms", "timeout": "500ms", "rise": 1, "fall": 2},
            }
        }
    )
    running = serve(spec, "--health-port", str(port))
    deadline = time.monotonic() + 15
    while True:
        answer = section(dig(running.host, running.port, "rancher.example.com", "A"), "ANSWER")
        if len(answer) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer == [f"rancher.example.com. 10 IN A {host}"]


@pytest.fixture
def healthy_layer7_lb(tmp_path: Path) -> Iterator[tuple[str, int, Path, Path]]:
    """A TLS server on one LB address: a layer 7 load balancer's 443 in front of a node
    whose ingress answers /healthz from its catch-all server."""
    host = LB_HOSTS[2]
    cert, key = write_self_signed(tmp_path / "lb.crt", tmp_path / "lb.key", "rancher.example.com")
    httpd = ThreadingHTTPServer((host, 0), _Healthz)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield host, int(httpd.server_address[1]), cert, key
    httpd.shutdown()
    httpd.server_close()


def test_layer7_probe_goes_over_tls_past_the_port_80_redirect(
    write_spec: Callable[..., Path],
    serve: Callable[..., Running],
    healthy_layer7_lb: tuple[str, int, Path, Path],
) -> None:
    host, port, cert, key = healthy_layer7_lb
    spec = write_spec(
        {
            "load_balancer": {
                "layer": 7,
                "tls": {"cert": str(cert), "key": str(key)},
                "address": LB_HOSTS[0],  # nothing listens there: down
                "extra_addresses": [host],
                "health": {"interval": "100ms", "timeout": "500ms", "rise": 1, "fall": 2},
            },
            "rancher": {"tls_source": "external"},
        }
    )
    running = serve(spec, "--health-port", str(port))
    deadline = time.monotonic() + 15
    while True:
        answer = section(dig(running.host, running.port, "rancher.example.com", "A"), "ANSWER")
        if len(answer) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer == [f"rancher.example.com. 10 IN A {host}"]


def test_probe_port_is_443_at_layer_7() -> None:
    from rke2ha.dns.health import probe_port
    from rke2ha.specfile import spec_from_source
    from rke2ha.yamlsource import YamlSource

    def port(layer: int) -> int:
        data = {**BASE_SPEC, "load_balancer": {"address": LB_HOSTS[0], "layer": layer}}
        return probe_port(spec_from_source(YamlSource(data=data, filename="x.yaml"), Path(".")))

    assert (port(4), port(7)) == (80, 443)
