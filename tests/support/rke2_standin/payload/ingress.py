"""The stand-in's add-ons: manifests deployed into the cluster, Rancher's HelmChart, and the
ingress on 80/443 answering with the lab node emulator's logic (rke2ha.lab.node_app and
ingress_model, bundled next to this file; differential-tested against real nginx).

Installed as /usr/local/share/rke2/standin/standin_ingress.py; `rke2 server` imports it.

Manifests: RKE2 applies every file in /var/lib/rancher/rke2/server/manifests to the cluster
(docs.rke2.io/advanced, "Auto-Deploying Manifests"); the stand-in stores each object of those
files in etcd under /registry/<group>/<kind>/<namespace>/<name>, so every server sees what
one server's directory holds. Objects whose file disappears stay (not modelled).

Rancher counts as installed on every node when a HelmChart object (helm.cattle.io/v1) for
the Rancher chart exists (spec.chart `rancher` or `<repo>/rancher`, or metadata.name
`rancher` with spec.chartContent) with spec.targetNamespace `cattle-system`, for
RANCHER_DELAY seconds (helm-controller and the rollout take time; env
RKE2_STANDIN_RANCHER_DELAY), and its values let RKE2's ingress serve it. Fields read:
hostname (spec.set.hostname over spec.valuesContent `hostname`: helm-controller passes
`set` as --set, and --set wins over values files: helm docs, "Values Files"), `tls`
(`external`: no TLS section, layer 7),
`ingress.ingressClassName` (must name the RKE2 ingress: `nginx` for rke2-ingress-nginx,
`traefik` for rke2-traefik, or be absent), `ingress.tls.source` (default `rancher`; with
`rancher` or `letsEncrypt` a cert-manager HelmChart must exist too, as the chart creates
cert-manager Issuers: Rancher docs, "Install/Upgrade Rancher on a Kubernetes Cluster").
The ingress settings come from the HelmChartConfig `rke2-ingress-nginx` (or `rke2-traefik`)
in kube-system, read by rke2ha.lab.ingress_config exactly as the lab reads it.

TLS on 443: for the Rancher hostname, the Secret `tls-rancher-ingress` in cattle-system when
it is a manifest object (ingress.tls.source=secret), else a certificate the stand-in signs
with the cluster CA (standing in for Rancher's or cert-manager's CA); for any other name
ingress-nginx's self-signed "Kubernetes Ingress Controller Fake Certificate" (ingress-nginx
docs, "Default SSL Certificate").
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import yaml

from rke2ha.errors import InvalidError
from rke2ha.lab import ingress_config, proxy_listener
from rke2ha.lab.ingress_model import IngressSettings
from rke2ha.lab.node_app import AcceptWebSocket, NodeApp, NodeProfile, Request, Response
from rke2ha.lab.node_states import NodeState, PortRole

OBJECTS_PREFIX = "/registry/standin-objects/"
RANCHER_NAMESPACE = "cattle-system"
TLS_SECRET = "tls-rancher-ingress"
INGRESS_CHARTS = {
    "ingress-nginx": ("rke2-ingress-nginx", "nginx"),
    "traefik": ("rke2-traefik", "traefik"),
}
CACHE_SECONDS = 1.0
WEBSOCKET_SECONDS = 30.0  # one subscribe stream lasts at most this long here
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

Put = Callable[[str, str], None]
Prefix = Callable[[str], list[tuple[str, str]]]
Log = Callable[[str, str], None]


def object_key(doc: dict[str, Any]) -> str | None:
    kind = doc.get("kind")
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if not kind or not name:
        return None
    group = (
        str(doc.get("apiVersion", "v1")).split("/")[0]
        if "/" in str(doc.get("apiVersion"))
        else "core"
    )
    namespace = meta.get("namespace") or "default"
    return f"{OBJECTS_PREFIX}{group}/{kind}/{namespace}/{name}"


def deploy_manifests(directory: Path, put: Put, seen: dict[str, str], log: Log) -> None:
    """Apply every object of every manifest file whose content changed since last time."""
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        digest = hashlib.sha256(text.encode()).hexdigest()
        if seen.get(path.name) == digest:
            continue
        seen[path.name] = digest
        try:
            docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
        except yaml.YAMLError as err:
            log("error", f"Failed to process config: {path}: {err}")
            continue
        for doc in docs:
            key = object_key(doc)
            if key is None:
                continue
            put(key, json.dumps({"object": doc, "applied": time.time()}))
            log(
                "info",
                f"Applied manifest object {key.removeprefix(OBJECTS_PREFIX)} from {path.name}",
            )


@dataclass(frozen=True)
class Rancher:
    hostname: str
    layer7: bool
    tls_source: str
    ready_at: float


@dataclass(frozen=True)
class Addons:
    rancher: Rancher | None
    rancher_note: str  # why Rancher is not (yet) served, for the log
    settings: IngressSettings
    tls_secret: tuple[bytes, bytes] | None


def _values(spec: dict[str, Any]) -> dict[str, Any]:
    values = yaml.safe_load(spec.get("valuesContent") or "") or {}
    return values if isinstance(values, dict) else {}


def _is_rancher(doc: dict[str, Any]) -> bool:
    spec = doc.get("spec") or {}
    chart = str(spec.get("chart") or "")
    named = (doc.get("metadata") or {}).get("name") == "rancher"
    return (
        chart == "rancher"
        or chart.endswith("/rancher")
        or (named and bool(spec.get("chartContent")))
    )


def _is_cert_manager(doc: dict[str, Any]) -> bool:
    spec = doc.get("spec") or {}
    chart = str(spec.get("chart") or "")
    named = (doc.get("metadata") or {}).get("name") == "cert-manager"
    return chart.endswith("cert-manager") or (named and bool(spec.get("chartContent")))


def read_addons(
    objects: list[tuple[str, str]], ingress_controller: str, rancher_delay: float
) -> Addons:
    charts = []
    config_text = None
    tls_secret = None
    chart_name, ingress_class = INGRESS_CHARTS.get(
        ingress_controller, INGRESS_CHARTS["ingress-nginx"]
    )
    for _key, value in objects:
        record = json.loads(value)
        doc, applied = record["object"], float(record["applied"])
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        where = (kind, meta.get("namespace") or "default", meta.get("name"))
        if kind == "HelmChart" and str(doc.get("apiVersion", "")).startswith("helm.cattle.io/"):
            charts.append((doc, applied))
        elif where == ("HelmChartConfig", "kube-system", chart_name):
            config_text = yaml.safe_dump(doc)
        elif where == ("Secret", RANCHER_NAMESPACE, TLS_SECRET):
            data = doc.get("data") or {}
            with contextlib.suppress(KeyError, ValueError):
                tls_secret = (base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))
    settings = IngressSettings()
    if config_text is not None:
        # A file helm would fail on leaves the ingress with RKE2's defaults.
        with contextlib.suppress(InvalidError):
            settings = ingress_config.parse_ingress_config(config_text, chart_name)
    rancher, note = None, "no HelmChart for the rancher chart in the manifests"
    for doc, applied in charts:
        if not _is_rancher(doc):
            continue
        spec = doc.get("spec") or {}
        if spec.get("targetNamespace") != RANCHER_NAMESPACE:
            note = f"the rancher HelmChart must target namespace {RANCHER_NAMESPACE}"
            continue
        values = _values(spec)
        hostname = str((spec.get("set") or {}).get("hostname") or values.get("hostname") or "")
        ingress = values.get("ingress") or {}
        klass = ingress.get("ingressClassName")
        tls_source = str((ingress.get("tls") or {}).get("source") or "rancher")
        layer7 = str(values.get("tls") or "ingress") == "external"
        if not hostname:
            note = "the rancher HelmChart sets no hostname"
        elif klass not in (None, ingress_class):
            note = f"Rancher's ingress class {klass!r} is not RKE2's ingress ({ingress_class})"
        elif (
            not layer7
            and tls_source in ("rancher", "letsEncrypt")
            and not any(_is_cert_manager(d) for d, _ in charts)
        ):
            note = f"ingress.tls.source={tls_source} needs cert-manager: no HelmChart for it"
        else:
            rancher = Rancher(
                hostname.lower().rstrip("."), layer7, tls_source, applied + rancher_delay
            )
            note = ""
    return Addons(rancher, note, settings, tls_secret)


# ---------------------------------------------------------------- certificates


def _context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as scratch:
        cert, key = Path(scratch) / "tls.crt", Path(scratch) / "tls.key"
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        key.chmod(0o600)
        context.load_cert_chain(str(cert), str(key))
    return context


# ---------------------------------------------------------------- the ingress


class Ingress:
    """80 and 443 of one node; the answers are NodeApp's, from the cluster's add-ons."""

    def __init__(
        self,
        node_name: str,
        prefix: Prefix,
        issue: Callable[[str], tuple[bytes, bytes]],
        fake: tuple[bytes, bytes],
        ca_pem: bytes,
        ingress_controller: str,
        rancher_delay: float,
        log: Log,
    ) -> None:
        self.node_name = node_name
        self.prefix = prefix
        self.issue = issue  # hostname -> (cert, key) signed by the cluster CA
        self.ca_pem = ca_pem
        self.controller = ingress_controller
        self.rancher_delay = rancher_delay
        self.log = log
        self._lock = threading.Lock()
        self._addons: Addons | None = None
        self._read_at = 0.0
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}
        # The default context: the fake certificate for names no Ingress claims (and for
        # clients sending no SNI); its SNI callback switches to the Rancher hostname's.
        self.fake = _context(*fake)
        self.fake.minimum_version = ssl.TLSVersion.TLSv1_2
        self.fake.sni_callback = self.sni
        self._last_note = ""

    def addons(self) -> Addons:
        with self._lock:
            if self._addons is None or time.monotonic() - self._read_at > CACHE_SECONDS:
                try:
                    objects = self.prefix(OBJECTS_PREFIX)
                    self._addons = read_addons(objects, self.controller, self.rancher_delay)
                except Exception as err:  # etcd unreachable: keep the last view
                    self.log("warning", f"ingress: reading add-ons: {err}")
                    if self._addons is None:
                        self._addons = Addons(None, str(err), IngressSettings(), None)
                self._read_at = time.monotonic()
                if self._addons.rancher_note != self._last_note and self._addons.rancher_note:
                    self.log("info", f"Rancher not served: {self._addons.rancher_note}")
                self._last_note = self._addons.rancher_note
            return self._addons

    def profile(self) -> NodeProfile:
        addons = self.addons()
        rancher = addons.rancher
        installed = rancher is not None and time.time() >= rancher.ready_at
        return NodeProfile(
            name=self.node_name,
            hostname=rancher.hostname if rancher else "",
            ingress="traefik" if self.controller == "traefik" else "nginx",
            layer7=rancher.layer7 if rancher else False,
            anonymous_health=False,
            health_token="",  # the apiserver is not served by the emulator here
            ca_pem=self.ca_pem,
            rancher_installed=installed,
            ingress_settings=addons.settings,
        )

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        addons = self.addons()
        rancher = addons.rancher
        if not rancher or not server_name or server_name.lower().rstrip(".") != rancher.hostname:
            return self.fake
        if addons.tls_secret is not None and rancher.tls_source == "secret":
            key = ("secret", hashlib.sha256(addons.tls_secret[0]).hexdigest())
            material = addons.tls_secret
        else:
            key = ("ca", rancher.hostname)
            material = None
        with self._lock:
            if key not in self._contexts:
                cert, private = material or self.issue(rancher.hostname)
                self._contexts[key] = _context(cert, private)
            return self._contexts[key]

    def sni(self, sock: Any, server_name: Any, _: Any) -> None:
        sock.context = self.context_for(server_name)

    def serve(self) -> list[ThreadingHTTPServer]:
        servers: list[ThreadingHTTPServer] = []
        for port, role in ((80, PortRole.INGRESS_HTTP), (443, PortRole.INGRESS_HTTPS)):
            handler = type("IngressHandler", (IngressHandler,), {"ingress": self, "role": role})
            httpd = IngressServer(("0.0.0.0", port), handler, self, role)
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            servers.append(httpd)
        return servers


class IngressServer(ThreadingHTTPServer):
    """Per connection, in its own thread: the PROXY header when the ingress expects one (a
    connection without it is closed unanswered, as nginx does), then TLS on 443."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type, ingress: Ingress, role: PortRole
    ) -> None:
        super().__init__(address, handler)
        self.ingress = ingress
        self.role = role

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        proxy: tuple[Any, Any] | None = None
        try:
            sock.settimeout(proxy_listener.HEADER_TIMEOUT)
            if self.ingress.profile().ingress_settings.proxy_protocol:
                header = _read_proxy_header(sock)
                proxy = proxy_listener.parse_header(header)
            if self.role is PortRole.INGRESS_HTTPS:
                sock = self.ingress.fake.wrap_socket(sock, server_side=True)
            sock.settimeout(30)
            self.finish_request(sock, (client_address, proxy))
        except (OSError, ValueError, ConnectionError):
            pass
        finally:
            self.shutdown_request(sock)


def _read_proxy_header(sock: socket.socket) -> bytes:
    deadline = time.monotonic() + proxy_listener.HEADER_TIMEOUT
    while time.monotonic() < deadline:
        data = sock.recv(proxy_listener.V1_MAX + 512, socket.MSG_PEEK)
        if not data:
            raise ConnectionError("closed before a PROXY header")
        length = proxy_listener.header_length(data)
        if length is not None and len(data) >= length:
            return sock.recv(length)
        time.sleep(0.01)
    raise ConnectionError("no PROXY header in time")


def _text_frame(text: str) -> bytes:
    """One unmasked server text frame with FIN set (RFC 6455 §5.2)."""
    payload = text.encode()
    if len(payload) < 126:
        head = bytes([0x81, len(payload)])
    else:
        head = bytes([0x81, 126]) + len(payload).to_bytes(2, "big")
    return head + payload


class IngressHandler(BaseHTTPRequestHandler):
    ingress: Ingress
    role: PortRole
    protocol_version = "HTTP/1.1"
    server_version = "nginx"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _peer(self) -> tuple[str | None, int | None]:
        # (socket peer, what the PROXY header named), as process_request_thread passes it
        address, proxy = cast(Any, self.client_address)
        if proxy is None:
            return str(address[0]), None
        source, destination = proxy
        return str(source[0]), int(destination[1])

    def _handle(self) -> None:
        peer, destination_port = self._peer()
        headers = {k.lower(): v for k, v in self.headers.items()}
        wants_ws = "websocket" in headers.get("upgrade", "").lower()
        request = Request(
            method=self.command,
            target=self.path,
            headers=headers,
            wants_websocket=wants_ws,
            peer=peer,
            proxy_destination_port=destination_port,
        )
        app = NodeApp(self.ingress.profile())
        reply = app.handle(self.role, request, NodeState.READY)
        if isinstance(reply, AcceptWebSocket):
            self._websocket(reply, headers)
            return
        assert isinstance(reply, Response)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = _handle
    do_HEAD = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle

    def _websocket(self, reply: AcceptWebSocket, headers: dict[str, str]) -> None:
        key = headers.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        stream = reply.stream
        deadline = time.monotonic() + WEBSOCKET_SECONDS
        try:
            while time.monotonic() < deadline:
                self.wfile.write(_text_frame(stream.tick()))
                self.wfile.flush()
                time.sleep(stream.interval)
        except OSError:
            pass
        self.close_connection = True
