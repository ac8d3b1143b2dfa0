"""The node emulator's ingress against real nginx configured the way ingress-nginx is.

The same requests (Host, path, port 80/443, X-Forwarded-Proto) go to a `rke2ha lab node`
process and to real nginx from `tests/support/ingress_nginx.py`, in each situation a real
cluster goes through: before Rancher is installed, after (its Ingress with TLS at layer 4),
and at layer 7 (`tls: external`) with and without `use-forwarded-headers`. Status codes and
redirect targets (Location) must be identical: the lab must not answer what our own
assumptions expect instead of what an ingress does.

Everything listens on 127.0.167.0/24 with the lab tests' port offset.
"""

from __future__ import annotations

import itertools
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.lab.conftest import HTTP, HTTPS, OFFSET, NodeProcess, lab_spec, spawn_node, write_spec
from tests.support.ingress_nginx import IngressNginx

from rke2ha.lab.material import ensure_lab_material
from rke2ha.specfile import load_spec

HOSTNAME = "rancher.lab.rke2ha.test"
SUBNET = "127.0.167"

USE_FORWARDED_HEADERS = """apiVersion: helm.cattle.io/v1
kind: HelmChartConfig
metadata: {name: rke2-ingress-nginx, namespace: kube-system}
spec:
  valuesContent: |
    controller:
      config: {use-forwarded-headers: "true"}
"""


@dataclass(frozen=True)
class Situation:
    name: str
    rancher: bool  # Rancher's Ingress exists
    external: bool  # Rancher tls=external (layer 7): no TLS on its Ingress
    trusted: bool  # use-forwarded-headers
    index: int  # picks this situation's addresses


SITUATIONS = [
    Situation("before-rancher", rancher=False, external=False, trusted=False, index=1),
    Situation("rancher-layer4", rancher=True, external=False, trusted=False, index=2),
    Situation("rancher-layer7", rancher=True, external=True, trusted=False, index=3),
    Situation("rancher-layer7-forwarded", rancher=True, external=True, trusted=True, index=4),
    Situation("before-rancher-layer7", rancher=False, external=True, trusted=True, index=5),
]

HOSTS = [HOSTNAME, HOSTNAME.upper(), "grafana.example.test", None]  # None: the node's address
# Paths whose answers come from the ingress or Rancher's redirect: what Rancher's own API
# answers past that (e.g. /v3/settings) is a stand-in choice on both sides, not compared.
PATHS = ["/healthz", "/ping", "/", "/dashboard/", "/dashboard/home?a=1&b=%20x"]
FORWARDED = [None, "https", "http"]


@dataclass(frozen=True)
class Answer:
    status: int
    location: str | None


def ask(
    address: str,
    port: int,
    tls: bool,
    host: str | None,
    path: str,
    xfp: str | None,
    xfh: str | None = None,
) -> Answer:
    """One HTTP/1.1 request on a fresh connection; SNI is the Host's name (when a name)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host or address}", "Connection: close"]
    if xfp is not None:
        lines.append(f"X-Forwarded-Proto: {xfp}")
    if xfh is not None:
        lines.append(f"X-Forwarded-Host: {xfh}")
    raw = socket.create_connection((address, port), timeout=5)
    sock: socket.socket = raw
    try:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sni = host.rsplit(":", 1)[0] if host else None
            sock = context.wrap_socket(raw, server_hostname=sni)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    location = None
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "location":
            location = value.strip()
    return Answer(status, location)


@dataclass
class Pair:
    emulator: NodeProcess
    nginx: IngressNginx


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pair]]:
    from tests.support.ingress_nginx import NGINX

    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed")
    root = tmp_path_factory.mktemp("emulator-vs-nginx")
    made: dict[str, Pair] = {}
    try:
        for situation in SITUATIONS:
            made[situation.name] = _pair(root / situation.name, situation)
        yield made
    finally:
        for pair in made.values():
            pair.emulator.stop()
            pair.nginx.stop()


def _pair(directory: Path, situation: Situation) -> Pair:
    base = 10 * situation.index
    addresses = [f"{SUBNET}.{base + 1}", f"{SUBNET}.{base + 2}", f"{SUBNET}.{base + 3}"]
    spec = lab_spec(addresses, lab={"subnet": f"{SUBNET}.0/24", "port_offset": OFFSET})
    if situation.external:
        spec["load_balancer"] = {"layer": 7}
    spec_file = write_spec(directory, spec)
    ensure_lab_material(load_spec(spec_file))
    extra = ["--rancher", "installed" if situation.rancher else "absent"]
    if situation.trusted:
        config = directory / "ingress-helmchartconfig.yaml"
        config.write_text(USE_FORWARDED_HEADERS)
        extra += ["--ingress-config", str(config)]
    emulator = spawn_node(spec_file, "node-1", *extra)
    nginx = IngressNginx(
        directory / "nginx",
        f"{SUBNET}.{base + 9}",
        HOSTNAME,
        rancher=situation.rancher,
        rancher_tls="external" if situation.external else "rancher",
        use_forwarded_headers=situation.trusted,
        http_port=HTTP,
        https_port=HTTPS,
    )
    try:
        nginx.start()
    except BaseException:
        emulator.stop()
        raise
    return Pair(emulator, nginx)


CASES = [
    pytest.param(
        situation,
        port,
        host,
        path,
        xfp,
        id=f"{situation.name}-{port - OFFSET}-{host or 'ip'}-{path}-{xfp or 'noxfp'}",
    )
    for situation, port, host, path, xfp in itertools.product(
        SITUATIONS, (HTTP, HTTPS), HOSTS, PATHS, FORWARDED
    )
]


@pytest.mark.parametrize(("situation", "port", "host", "path", "xfp"), CASES)
def test_emulator_answers_like_ingress_nginx(
    pairs: dict[str, Pair],
    situation: Situation,
    port: int,
    host: str | None,
    path: str,
    xfp: str | None,
) -> None:
    pair = pairs[situation.name]
    tls = port == HTTPS
    real = ask(pair.nginx.address, port, tls, host, path, xfp)
    emulated = ask(pair.emulator.address, port, tls, host, path, xfp)
    # Exact, Location's host case included: ingress-nginx redirects to the Host as sent
    # ($best_http_host, lua_ingress.lua), Rancher to r.Host (dynamiclistener redirect.go).
    assert emulated == real


# The Host as Rancher and the ssl-redirect see it: a port in Host (cut for the 308, mangled to
# N*1000+443 by Rancher) and, where forwarded headers are trusted, the first X-Forwarded-Host
# ($best_http_host: lua_ingress.lua rewrite(); nginx.tmpl `proxy_set_header Host`).
HOST_CASES = [
    pytest.param(
        situation, port, host, xfh, xfp, id=f"{situation.name}-{port - OFFSET}-{host}-{xfh}-{xfp}"
    )
    for situation, port, host, xfh, xfp in itertools.product(
        SITUATIONS,
        (HTTP, HTTPS),
        (f"{HOSTNAME}:80", f"{HOSTNAME.title()}:8080"),
        (None, "Public.Example.TEST:8443, proxy.internal"),
        (None, "http"),
    )
]


@pytest.mark.parametrize(("situation", "port", "host", "xfh", "xfp"), HOST_CASES)
def test_emulator_redirects_to_the_host_ingress_nginx_and_rancher_see(
    pairs: dict[str, Pair],
    situation: Situation,
    port: int,
    host: str,
    xfh: str | None,
    xfp: str | None,
) -> None:
    pair = pairs[situation.name]
    tls = port == HTTPS
    real = ask(pair.nginx.address, port, tls, host, "/dashboard/", xfp, xfh)
    emulated = ask(pair.emulator.address, port, tls, host, "/dashboard/", xfp, xfh)
    assert emulated == real


def test_the_differential_covers_every_kind_of_answer(pairs: dict[str, Pair]) -> None:
    """The matrix is not vacuous: nginx gives 200, 404, 302 and 308 across it."""
    seen = {
        ask(pair.nginx.address, port, port == HTTPS, host, path, xfp).status
        for pair, port, host, path, xfp in itertools.product(
            pairs.values(), (HTTP, HTTPS), HOSTS[:3:2], ("/healthz", "/dashboard/x"), FORWARDED
        )
    }
    assert {200, 302, 308, 404} <= seen, seen


USE_PROXY_PROTOCOL = USE_FORWARDED_HEADERS.replace("use-forwarded-headers", "use-proxy-protocol")


def _raw(address: str, port: int, first: bytes, request: bytes) -> bytes:
    """What comes back on one connection after `first` (a PROXY header, or nothing)."""
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.sendall(first + request)
        data = b""
        try:
            while len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        return data


@pytest.fixture(scope="module")
def proxy_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    from tests.support.ingress_nginx import NGINX

    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed")
    directory = tmp_path_factory.mktemp("emulator-vs-nginx-proxy")
    addresses = [f"{SUBNET}.91", f"{SUBNET}.92", f"{SUBNET}.93"]
    spec = lab_spec(addresses, lab={"subnet": f"{SUBNET}.0/24", "port_offset": OFFSET})
    spec_file = write_spec(directory, spec)
    ensure_lab_material(load_spec(spec_file))
    config = directory / "ingress-helmchartconfig.yaml"
    config.write_text(USE_PROXY_PROTOCOL)
    emulator = spawn_node(spec_file, "node-1", "--ingress-config", str(config))
    nginx = IngressNginx(
        directory / "nginx",
        f"{SUBNET}.99",
        HOSTNAME,
        rancher=True,
        proxy_protocol=True,
        http_port=HTTP,
        https_port=HTTPS,
    )
    try:
        nginx.start()
        yield Pair(emulator, nginx)
    finally:
        emulator.stop()
        nginx.stop()


@pytest.mark.parametrize("host", [HOSTNAME, None])
def test_with_proxy_protocol_both_close_a_bare_connection_and_answer_after_a_header(
    proxy_pair: Pair, host: str | None
) -> None:
    for address in (proxy_pair.nginx.address, proxy_pair.emulator.address):
        request = f"GET /healthz HTTP/1.1\r\nHost: {host or address}\r\nConnection: close\r\n\r\n"
        bare = _raw(address, HTTP, b"", request.encode())
        assert bare == b"", (address, bare[:100])  # closed without an answer
    answers = set()
    for address in (proxy_pair.nginx.address, proxy_pair.emulator.address):
        header = f"PROXY TCP4 198.51.100.7 {address} 40000 80\r\n".encode()
        request = f"GET /healthz HTTP/1.1\r\nHost: {host or address}\r\nConnection: close\r\n\r\n"
        answer = _raw(address, HTTP, header, request.encode())
        answers.add(answer.split(b"\r\n", 1)[0].split(b" ")[1])
    assert answers == ({b"308"} if host else {b"200"})
