#!/usr/bin/python3
"""Stand-in `rke2` for the test machines: `rke2 server` driven by /etc/rancher/rke2/config.yaml.

Installed as /usr/local/bin/rke2 by the stand-in install.sh and started by the real
rke2-server.service. Runs on the machines' Debian python3 with python3-yaml and
python3-cryptography, and starts the machines' real etcd (/usr/bin/etcd) as its datastore.
What it does and what it cannot prove is in tests/support/rke2_standin/__init__.py.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Replaced by build_artifacts with the version the artifacts are built for.
VERSION = "@RKE2_VERSION@"

CONFIG = Path(os.environ.get("RKE2_CONFIG_FILE", "/etc/rancher/rke2/config.yaml"))
DATA = Path(os.environ.get("RKE2_STANDIN_DATA_DIR", "/var/lib/rancher/rke2"))
SERVER_DIR = DATA / "server"
TLS_DIR = SERVER_DIR / "tls"
DB_DIR = SERVER_DIR / "db" / "etcd"
MANIFESTS = SERVER_DIR / "manifests"
KUBECONFIG = Path("/etc/rancher/rke2/rke2.yaml")
ETCD = os.environ.get("RKE2_STANDIN_ETCD", "/usr/bin/etcd")
# The ingress module and the lab emulator modules it uses, unpacked beside the binary.
LIBRARY = Path(__file__).resolve().parent.parent / "share" / "rke2" / "standin"
MANIFEST_SCAN_SECONDS = 2.0

SUPERVISOR_PORT = 9345  # RKE2's supervisor (registration) port, docs.rke2.io/install/requirements
APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380

# kube-controller-manager marks a node's Ready condition Unknown when its status was not
# posted for --node-monitor-grace-period: 50 s by default since Kubernetes 1.32, 40 s before
# (kubernetes/kubernetes#127352, #121793).
NODE_GRACE_SECONDS = 50.0
HEARTBEAT_SECONDS = 5.0
# k3s-io/k3s pkg/etcd/etcd.go: manageTickerTime = 15 s, learnerMaxStallTime = 5 min. The
# ticker can be shortened for tests through the unit's environment file.
LEARNER_TICK = float(os.environ.get("RKE2_STANDIN_LEARNER_TICK", "15"))
# Or at run time, for a test that wants the real interval in one place and a short one in
# the next without restarting the leader: seconds in this file win while it exists, and an
# interval already begun ends as soon as the new one has passed.
LEARNER_TICK_FILE = Path("/run/rke2-standin-learner-tick")
LEARNER_POLL = 0.25
LEARNER_MAX_STALL = 300.0
NODES_PREFIX = "/registry/minions/"  # where kube-apiserver keeps Node objects in etcd


class Fatal(Exception):
    """Logged at level=fatal; the process exits 1 so systemd records the failure."""


DEBUG = False  # config `debug: true`, as RKE2's --debug


def log(level: str, msg: str) -> None:
    # RKE2 logs with logrus' text format to stderr, which the unit sends to the journal.
    if level == "debug" and not DEBUG:
        return
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    escaped = msg.replace("\\", "\\\\").replace('"', '\\"')
    print(f'time="{now}" level={level} msg="{escaped}"', file=sys.stderr, flush=True)


# ---------------------------------------------------------------- config


@dataclass
class Config:
    token: str | None
    server: str | None
    tls_san: list[str]
    node_name: str
    node_ip: str
    authentication_config: Path | None
    raw: dict[str, Any] = field(default_factory=dict)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(item) for item in value]
    # RKE2 accepts a comma-separated string for list flags.
    return [part.strip() for part in str(value).split(",") if part.strip()]


def default_ip() -> str:
    """The address of the interface with the default route, as RKE2 picks node-ip by default
    (docs.rke2.io/install/requirements: a default route is needed to detect the node IP);
    the first global address when there is none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP connect sends nothing
            return str(probe.getsockname()[0])
        except OSError:
            pass
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    raise Fatal("unable to find an address for this node: no default route and no global address")


def read_config(path: Path = CONFIG) -> Config:
    raw: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise Fatal(f"failed to parse {path}: not a map of flags")
        raw = loaded
    auth = None
    for arg in _as_list(raw.get("kube-apiserver-arg")):
        key, _, value = arg.lstrip("-").partition("=")
        if key == "authentication-config":
            auth = Path(value)
    node_ips = _as_list(raw.get("node-ip"))
    return Config(
        token=str(raw["token"]) if raw.get("token") else None,
        server=str(raw["server"]).rstrip("/") if raw.get("server") else None,
        tls_san=_as_list(raw.get("tls-san")),
        node_name=str(raw.get("node-name") or socket.gethostname()).lower(),
        node_ip=node_ips[0] if node_ips else default_ip(),
        authentication_config=auth,
        raw=raw,
    )


# ---------------------------------------------------------------- token


@dataclass(frozen=True)
class Token:
    ca_hash: str | None
    username: str
    password: str


def parse_token(text: str) -> Token:
    """RKE2/K3s tokens: secure `K10<CA hash>::<username>:<password>` or short `<password>`
    (docs.rke2.io/security/token)."""
    if text.startswith("K10") and "::" in text:
        ca_hash, _, creds = text[3:].partition("::")
        username, sep, password = creds.partition(":")
        if not sep:
            raise Fatal(
                "failed to normalize server token; must be in format "
                "K10<CA-HASH>::<USERNAME>:<PASSWORD> or <PASSWORD>"
            )
        return Token(ca_hash, username, password)
    return Token(None, "server", text)


def ca_hash(ca_pem: bytes) -> str:
    # For a self-signed CA the token's hash is the SHA256 of the PEM as stored on disk
    # (docs.rke2.io/security/token, "Secure").
    return hashlib.sha256(ca_pem).hexdigest()


# ---------------------------------------------------------------- certificates


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def self_signed(
    cn: str, org: str | None = None, dns_names: tuple[str, ...] = ()
) -> tuple[bytes, bytes]:
    """A self-signed certificate and key: a CA without `dns_names`, a server leaf with."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name(cn, org)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
    )
    if dns_names:
        sans = x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names])
        builder = builder.add_extension(sans, critical=False)
    else:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_ca() -> tuple[bytes, bytes]:
    # RKE2 names its self-signed CAs `rke2-server-ca@<unix time>`.
    return self_signed(f"rke2-server-ca@{int(time.time())}")


def issue(
    ca_pem: bytes, ca_key_pem: bytes, cn: str, names: list[str], org: str | None = None
) -> tuple[bytes, bytes]:
    """A leaf for both server and client use; `names` become DNS or IP SANs."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = []
    for item in dict.fromkeys(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(item)))
        except ValueError:
            sans.append(x509.DNSName(item))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


@dataclass
class Pki:
    ca: Path = TLS_DIR / "server-ca.crt"
    ca_key: Path = TLS_DIR / "server-ca.key"
    serving: Path = TLS_DIR / "serving.crt"
    serving_key: Path = TLS_DIR / "serving.key"
    etcd: Path = TLS_DIR / "etcd" / "node.crt"
    etcd_key: Path = TLS_DIR / "etcd" / "node.key"
    admin: Path = TLS_DIR / "client-admin.crt"
    admin_key: Path = TLS_DIR / "client-admin.key"

    def issue_node(self, config: Config) -> None:
        """This node's own leaves, from the cluster CA (first server: made here; joiner: from
        the bootstrap data, as RKE2 servers share the CA and each signs its own certificates)."""
        ca_pem, ca_key_pem = self.ca.read_bytes(), self.ca_key.read_bytes()
        local = ["localhost", "127.0.0.1", config.node_name, config.node_ip]
        serving_names = [
            *local,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            *config.tls_san,
        ]
        for (crt, key), cn, names, org in (
            ((self.serving, self.serving_key), "kube-apiserver", serving_names, None),
            ((self.etcd, self.etcd_key), f"etcd-{config.node_name}", local, None),
            ((self.admin, self.admin_key), "system:admin", [], "system:masters"),
        ):
            cert_pem, key_pem = issue(ca_pem, ca_key_pem, cn, names, org)
            write_private(key, key_pem)
            write_private(crt, cert_pem)


# ---------------------------------------------------------------- etcd


class EtcdError(Exception):
    pass


class EtcdClient:
    """etcd's v3 JSON gateway (/v3/...), the same API etcdctl uses over gRPC. Like etcd's
    clients it moves on to the next endpoint when one cannot be reached; an answer from
    etcd (its error included) is final."""

    def __init__(self, endpoints: str | list[str], pki: Pki) -> None:
        listed = [endpoints] if isinstance(endpoints, str) else endpoints
        self.endpoints = [endpoint.rstrip("/") for endpoint in listed]
        self.pki = pki
        self._context: ssl.SSLContext | None = None

    @property
    def context(self) -> ssl.SSLContext:
        """Made on first use: the client exists before this node's certificates do."""
        if self._context is None:
            context = ssl.create_default_context(cafile=str(self.pki.ca))
            context.check_hostname = False
            context.load_cert_chain(str(self.pki.etcd), str(self.pki.etcd_key))
            self._context = context
        return self._context

    def call(self, path: str, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        unreachable = []
        for endpoint in self.endpoints:
            request = urllib.request.Request(
                f"{endpoint}/v3/{path}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout, context=self.context) as r:
                    return dict(json.load(r))
            except urllib.error.HTTPError as err:
                text = err.read().decode(errors="replace")
                try:
                    detail = json.loads(text)
                    message = detail.get("error") or detail.get("message") or text
                except ValueError:
                    message = text
                raise EtcdError(str(message)) from None
            except (OSError, ValueError) as err:
                unreachable.append(f"{endpoint}: {getattr(err, 'reason', err)}")
        raise EtcdError("; ".join(unreachable) or "no etcd endpoint")

    def members(self) -> list[dict[str, Any]]:
        return list(self.call("cluster/member/list", {}).get("members", []))

    def add_learner(self, peer_url: str) -> dict[str, Any]:
        # Longer than etcd's own request timeout (~7 s by default), so that a cluster
        # without quorum answers with etcd's error, not ours.
        body = {"peerURLs": [peer_url], "isLearner": True}
        return self.call("cluster/member/add", body, timeout=20)

    def promote(self, member_id: str) -> None:
        self.call("cluster/member/promote", {"ID": member_id})

    def put(self, key: str, value: str) -> None:
        self.call("kv/put", {"key": _b64(key), "value": _b64(value)})

    def prefix(self, prefix: str) -> list[tuple[str, str]]:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        reply = self.call("kv/range", {"key": _b64(prefix), "range_end": _b64(end)})
        return [
            (_unb64(kv["key"]), _unb64(kv.get("value", ""))) for kv in reply.get("kvs", []) or []
        ]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def peer_url(ip: str) -> str:
    return f"https://{ip}:{ETCD_PEER_PORT}"


def client_url(ip: str) -> str:
    return f"https://{ip}:{ETCD_CLIENT_PORT}"


def start_etcd(config: Config, pki: Pki, initial: dict[str, str] | None) -> subprocess.Popen[bytes]:
    """Start /usr/bin/etcd. `initial`: {name: peer URL} for a member that has no data yet
    (new cluster when it names only this node, else `existing`); None restarts from data."""
    DB_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(DB_DIR, 0o700)
    argv = [
        ETCD,
        f"--name={config.node_name}",
        f"--data-dir={DB_DIR}",
        f"--listen-client-urls={client_url(config.node_ip)},{client_url('127.0.0.1')}",
        f"--advertise-client-urls={client_url(config.node_ip)}",
        f"--listen-peer-urls={peer_url(config.node_ip)}",
        f"--initial-advertise-peer-urls={peer_url(config.node_ip)}",
        f"--cert-file={pki.etcd}",
        f"--key-file={pki.etcd_key}",
        f"--trusted-ca-file={pki.ca}",
        "--client-cert-auth=true",
        f"--peer-cert-file={pki.etcd}",
        f"--peer-key-file={pki.etcd_key}",
        f"--peer-trusted-ca-file={pki.ca}",
        "--peer-client-cert-auth=true",
        "--log-outputs=stderr",
    ]
    state = "from its data"
    if initial is not None:
        state = "new" if list(initial) == [config.node_name] else "existing"
        cluster = ",".join(f"{name}={url}" for name, url in initial.items())
        argv += [f"--initial-cluster={cluster}", f"--initial-cluster-state={state}"]
    log("info", f"Starting etcd member {config.node_name}, cluster state {state}")
    # etcd tells systemd READY=1 itself when it finds NOTIFY_SOCKET (it is a notify service
    # of its own); here only rke2 may say when the server is ready.
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    return subprocess.Popen(argv, stdout=sys.stderr, stderr=sys.stderr, env=env)


def wait_etcd_healthy(proc: subprocess.Popen[bytes], pki: Pki, timeout: float = 60.0) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.check_hostname = False
    context.load_cert_chain(str(pki.etcd), str(pki.etcd_key))
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Fatal(f"etcd exited with code {proc.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(
                f"{client_url('127.0.0.1')}/health", timeout=2, context=context
            ) as resp:
                body = json.load(resp)
                if str(body.get("health")) == "true":
                    return
                last = json.dumps(body)
        except (OSError, ValueError) as err:
            last = str(err)
        time.sleep(0.2)
    raise Fatal(f"etcd not healthy after {timeout:.0f}s: {last}")


# ---------------------------------------------------------------- cluster start


def https_json(
    url: str,
    context: ssl.SSLContext,
    auth: tuple[str, str] | None = None,
    timeout: float = 10.0,
) -> bytes:
    request = urllib.request.Request(url)
    if auth:
        basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as err:
        raise Fatal(f"{url}: {err.code} {err.reason}") from None
    except (OSError, ValueError) as err:
        raise Unreachable(f'Get "{url}": {getattr(err, "reason", err)}') from None


class Unreachable(Fatal):
    """No HTTP answer at all: refused, timed out, TLS failed."""


# Called once this node's certificates exist, with the cluster password: starts 9345 and
# 6443. RKE2 listens on 9345 as soon as the service starts, long before the node is a
# working member (rancher/rke2-docs#231), which is why a load balancer must also check 6443.
ServeEarly = Callable[[str], None]


def first_server(
    config: Config, pki: Pki, serve_early: ServeEarly
) -> tuple[subprocess.Popen[bytes], str]:
    """No `server:` and no etcd data: a new cluster with a new CA and token."""
    log("info", "Managed etcd cluster initializing")  # the RKE2/k3s log line
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    if not pki.ca.exists():
        ca_pem, ca_key_pem = make_ca()
        write_private(pki.ca_key, ca_key_pem)
        write_private(pki.ca, ca_pem)
    password = parse_token(config.token).password if config.token else secrets.token_hex(16)
    pki.issue_node(config)
    serve_early(password)
    proc = start_etcd(config, pki, {config.node_name: peer_url(config.node_ip)})
    wait_etcd_healthy(proc, pki)
    return proc, password


def join(config: Config, pki: Pki, serve_early: ServeEarly) -> tuple[subprocess.Popen[bytes], str]:
    """`server:` set and no etcd data: take the cluster CA from that server and join its etcd
    as a learner, then be promoted to a voting member. K3s (and so RKE2) adds joining servers
    as learners (k3s-io/k3s pkg/etcd/etcd.go, MemberAddAsLearner) and etcd allows one learner
    at a time ("too many learner members in cluster": rancher/rke2#349, k3s-io/k3s#4335)."""
    assert config.server is not None
    if not config.token:
        raise Fatal("--token is required when joining a cluster (server is set)")
    token = parse_token(config.token)
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    # The joiner fetches /cacerts without verification, then checks it against the token's
    # hash before sending credentials (docs.rke2.io/security/token, "TLS Bootstrapping").
    try:
        ca_pem = https_json(f"{config.server}/cacerts", insecure)
    except Unreachable as err:
        # k3s-io/k3s pkg/clientaccess (getCACerts): "failed to get CA certs at <url>"; RKE2
        # exits with `preparing server: failed to get CA certs: Get "<url>": <dial error>`.
        raise Fatal(
            f"starting kubernetes: preparing server: failed to get CA certs: {err}"
        ) from None
    if token.ca_hash is not None and not hmac.compare_digest(token.ca_hash, ca_hash(ca_pem)):
        raise Fatal(
            f"starting kubernetes: preparing server: token CA hash does not match the "
            f"Cluster CA certificate hash: {token.ca_hash} != {ca_hash(ca_pem)}"
        )
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    pki.ca.write_bytes(ca_pem)
    trusted = ssl.create_default_context(cafile=str(pki.ca))
    # The supervisor adds requested names to its certificate (dynamiclistener); the chain is
    # what is checked here, not the name.
    trusted.check_hostname = False
    auth = (token.username, token.password)
    # Wrong token: RKE2 exits with "failed to validate server configuration:
    # https://<server>:9345/v1-rke2/config: 401 Unauthorized" (rancher/rke2#3656).
    try:
        https_json(f"{config.server}/v1-rke2/config", trusted, auth)
    except Fatal as err:
        raise Fatal(
            f"starting kubernetes: preparing server: failed to validate server configuration: {err}"
        ) from None
    try:
        bootstrap = json.loads(
            https_json(f"{config.server}/v1-rke2/server-bootstrap", trusted, auth)
        )
    except Fatal as err:
        raise Fatal(f"starting kubernetes: preparing server: {err}") from None
    write_private(pki.ca_key, base64.b64decode(bootstrap["ca_key"]))
    pki.issue_node(config)
    serve_early(token.password)

    endpoints = [str(url) for url in bootstrap["etcd_endpoints"]]
    me = f"{config.node_name}={peer_url(config.node_ip)}"
    log("info", f"Adding member {me} to etcd cluster {endpoints} as a learner")
    etcd = EtcdClient(endpoints, pki)
    try:
        added = etcd.add_learner(peer_url(config.node_ip))
    except EtcdError as err:
        raise Fatal(
            f"starting kubernetes: preparing server: start managed database: {err}"
        ) from None
    member_id = str(added["member"]["ID"])
    initial: dict[str, str] = {}
    for member in added.get("members", []):
        urls = member.get("peerURLs") or []
        if str(member.get("ID")) == member_id:
            initial[config.node_name] = peer_url(config.node_ip)
        elif member.get("name") and urls:
            initial[str(member["name"])] = str(urls[0])
    # The line RKE2 logs here (rancher/rke2#4908).
    members = ", ".join(f"{name}={url}" for name, url in initial.items())
    log("info", f"Starting etcd to join cluster with members [{members}]")
    proc = start_etcd(config, pki, initial)
    # The joiner does not promote itself: the etcd leader's server promotes learners that
    # have caught up, on a 15 s ticker, and gives up on one stalled for 5 minutes (k3s-io/k3s
    # pkg/etcd/etcd.go: manageLearners, manageTickerTime, learnerMaxStallTime). So a learner
    # stays one for up to 15 s, the window in which a second join is refused.
    log("info", f"Waiting for the cluster to promote learner {config.node_name}")
    deadline = time.monotonic() + LEARNER_MAX_STALL
    while True:
        if proc.poll() is not None:
            raise Fatal(f"etcd exited with code {proc.returncode} while joining as a learner")
        try:
            mine = [m for m in etcd.members() if str(m.get("ID")) == member_id]
        except EtcdError as err:
            mine, last = [], str(err)
        else:
            last = "still a learner" if mine else "removed from the cluster"
            if mine and not mine[0].get("isLearner"):
                log("info", f"etcd member {config.node_name} promoted to voter")
                break
            if not mine:
                raise Fatal(f"etcd member {config.node_name} was removed while a learner")
        if time.monotonic() > deadline:
            raise Fatal(f"learner {config.node_name} not promoted in time: {last}")
        time.sleep(0.5)
    wait_etcd_healthy(proc, pki)
    return proc, token.password


def restart(
    config: Config, pki: Pki, serve_early: ServeEarly
) -> tuple[subprocess.Popen[bytes], str]:
    """etcd data exists: `server:` is ignored and the member restarts from its data."""
    # The line RKE2/k3s log on a restart with data (k3s-io/k3s pkg/etcd/etcd.go).
    log("info", "Managed etcd cluster bootstrap already complete and initialized")
    token_file = SERVER_DIR / "token"
    if not token_file.exists():
        raise Fatal(f"etcd data exists but {token_file} is missing")
    password = parse_token(token_file.read_text().strip()).password
    if config.token and parse_token(config.token).password != password:
        # The token is fixed when the cluster is created (docs.rke2.io/security/token); RKE2
        # exits with "starting kubernetes: preparing server: bootstrap data already found and
        # encrypted with different token".
        raise Fatal(
            "starting kubernetes: preparing server: bootstrap data already found and "
            "encrypted with different token"
        )
    pki.issue_node(config)
    serve_early(password)
    proc = start_etcd(config, pki, None)
    wait_etcd_healthy(proc, pki)
    return proc, password


# ---------------------------------------------------------------- state shared by handlers


@dataclass
class Server:
    config: Config
    pki: Pki
    password: str
    etcd: EtcdClient
    anonymous_paths: frozenset[str]
    started: float = field(default_factory=time.time)
    # Set once this node is a working member (its etcd a voter, its node record written).
    ready: threading.Event = field(default_factory=threading.Event)

    def node_list(self) -> dict[str, Any]:
        members = {str(m.get("name")): m for m in self.etcd.members()}
        now = time.time()
        items = []
        for _, value in self.etcd.prefix(NODES_PREFIX):
            record = json.loads(value)
            member = members.get(record["name"])
            fresh = now - float(record["heartbeat"]) < NODE_GRACE_SECONDS
            voter = member is not None and not member.get("isLearner")
            ready = voter and fresh
            items.append(node_object(record, ready))
        return {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": items}

    def heartbeat(self) -> None:
        record = {
            "name": self.config.node_name,
            "address": self.config.node_ip,
            "created": self.started,
            "heartbeat": time.time(),
            "version": VERSION,
        }
        self.etcd.put(NODES_PREFIX + self.config.node_name, json.dumps(record))


def learner_tick() -> float:
    try:
        return float(LEARNER_TICK_FILE.read_text())
    except (OSError, ValueError):
        return LEARNER_TICK


def manage_learners(state: Server, stop: threading.Event) -> None:
    """On the etcd leader, every LEARNER_TICK: promote each learner etcd lets us promote
    (it refuses one not yet in sync with the leader; the next tick tries again)."""
    last = time.monotonic()
    while not stop.wait(LEARNER_POLL):
        if time.monotonic() - last < learner_tick():
            continue
        log("debug", "Checking etcd learners")
        try:
            check_learners(state)
        finally:
            last = time.monotonic()  # the next interval starts when this check is done


def check_learners(state: Server) -> None:
    """Promote each learner etcd lets this server promote, if it is the etcd leader."""
    try:
        status = state.etcd.call("maintenance/status", {})
        if str(status.get("leader")) != str(status.get("header", {}).get("member_id")):
            return
        for member in state.etcd.members():
            if not member.get("isLearner"):
                continue
            name = member.get("name") or member["ID"]
            try:
                state.etcd.promote(str(member["ID"]))
                log("info", f"Promoted learner etcd member {name}")
            except EtcdError as err:
                log("info", f"Learner {name} not promoted: {err}")
    except EtcdError as err:
        log("warning", f"managing etcd learners: {err}")


def node_object(record: dict[str, Any], ready: bool) -> dict[str, Any]:
    stamp = datetime.datetime.fromtimestamp(float(record["heartbeat"]), datetime.UTC)
    roles = ("control-plane", "etcd", "master")  # what an RKE2 server node carries
    return {
        "metadata": {
            "name": record["name"],
            "labels": {f"node-role.kubernetes.io/{role}": "true" for role in roles},
        },
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "Unknown",
                    "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                    "lastHeartbeatTime": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": record["address"]},
                {"type": "Hostname", "address": record["name"]},
            ],
            "nodeInfo": {"kubeletVersion": record["version"]},
        },
    }


def version_info() -> dict[str, str]:
    core = VERSION.split("+")[0].lstrip("v").split(".")
    return {
        "major": core[0],
        "minor": core[1] if len(core) > 1 else "0",
        "gitVersion": VERSION,
        "platform": "linux/amd64",
    }


def unauthorized() -> dict[str, Any]:
    # kube-apiserver's body for a request it cannot authenticate.
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }


def anonymous_paths(path: Path | None) -> frozenset[str]:
    """Paths the AuthenticationConfiguration lets anonymous callers reach; a config that cannot
    be read stops the apiserver, as kube-apiserver refuses to start with it."""
    if path is None:
        return frozenset()
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise Fatal(f"kube-apiserver: failed to load authentication-config {path}: {err}") from None
    anonymous = document.get("anonymous") or {}
    if not anonymous.get("enabled"):
        return frozenset()
    return frozenset(str(c.get("path")) for c in anonymous.get("conditions") or [])


# ---------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    server_version = "rke2-standin"
    state: Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def reply(
        self, code: int, body: bytes | str | dict[str, Any], kind: str = "text/plain"
    ) -> None:
        if isinstance(body, dict):
            data, kind = json.dumps(body).encode(), "application/json"
        else:
            data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def cluster_password(state: Server) -> str:
    """The password of the token in server/token, read at each request: `rke2 token rotate`
    changes the cluster's token while the servers run (rancher/rke2#4869), after which a
    joiner with the old token is refused, and a server restarted with the old token in its
    config fails (rancher/rke2#6250). Tests rotate it by rewriting that file."""
    try:
        return parse_token((SERVER_DIR / "token").read_text().strip()).password
    except (OSError, Fatal):
        return state.password


class SupervisorHandler(Handler):
    def authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        ok = user == "server" and hmac.compare_digest(password, cluster_password(self.state))
        if not ok:
            # What the server logs for a joiner with a wrong token (k3s-io/k3s#2310).
            log(
                "error",
                f"Failed to authenticate request from {self.client_address[0]}: "
                "invalid username/password combination",
            )
        return ok

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/ping":
            self.reply(200, "pong")
        elif path == "/cacerts":
            self.reply(200, self.state.pki.ca.read_bytes())
        elif path.startswith("/v1-rke2/"):
            if not self.authorized():
                self.reply(401, "Unauthorized")
            elif path == "/v1-rke2/config":
                self.reply(200, {"node_name_taken": False})
            elif path == "/v1-rke2/readyz":
                # The supervisor's own readiness (rancher/rke2#4908: 500 while joining).
                if self.state.ready.is_set():
                    self.reply(200, "ok")
                else:
                    self.reply(500, "500 Internal Server Error")
            elif path == "/v1-rke2/server-bootstrap" and not self.state.ready.is_set():
                # A server that has not joined yet has nothing to hand out.
                self.reply(500, "500 Internal Server Error")
            elif path == "/v1-rke2/server-bootstrap":
                try:
                    members = self.state.etcd.members()
                except EtcdError as err:
                    log("error", f"server-bootstrap: {err}")
                    self.reply(500, "500 Internal Server Error")
                    return
                endpoints = [
                    str(url)
                    for member in members
                    if member.get("name") and not member.get("isLearner")
                    for url in member.get("clientURLs") or []
                ]
                self.reply(
                    200,
                    {
                        "ca_key": base64.b64encode(self.state.pki.ca_key.read_bytes()).decode(),
                        "etcd_endpoints": endpoints,
                    },
                )
            else:
                self.reply(404, "404 page not found")
        else:
            self.reply(404, "404 page not found")


class ApiserverHandler(Handler):
    def authenticated(self) -> bool:
        sock = self.connection
        return isinstance(sock, ssl.SSLSocket) and bool(sock.getpeercert())

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if not self.authenticated() and path not in self.state.anonymous_paths:
            self.reply(401, unauthorized())
            return
        if path == "/livez":
            # /livez carries no etcd check here (the lab emulator's reading: it stays 200
            # while the node cannot reach its datastore).
            self.reply(200, "ok")
        elif path in ("/healthz", "/readyz"):
            # kube-apiserver's etcd check reads a key through the quorum: a member cut off
            # from the majority fails it even though its own process answers.
            try:
                self.state.etcd.call("kv/range", {"key": _b64("health")}, timeout=2)
            except EtcdError:
                # kube-apiserver's healthz output with a failing etcd check.
                name = path.strip("/")
                self.reply(500, f"[-]etcd failed: reason withheld\n{name} check failed\n")
                return
            self.reply(200, "ok")
        elif path == "/version":
            self.reply(200, version_info())
        elif path == "/api/v1/nodes":
            try:
                self.reply(200, self.state.node_list())
            except EtcdError as err:
                self.reply(500, {"kind": "Status", "status": "Failure", "message": str(err)})
        else:
            self.reply(404, {"kind": "Status", "status": "Failure", "reason": "NotFound"})


def serve(port: int, handler: type[Handler], state: Server, client_ca: bool) -> ThreadingHTTPServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(state.pki.serving), str(state.pki.serving_key))
    if client_ca:
        context.load_verify_locations(str(state.pki.ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    bound = type(handler.__name__, (handler,), {"state": state})
    httpd = ThreadingHTTPServer(("0.0.0.0", port), bound)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def write_kubeconfig(pki: Pki) -> None:
    """/etc/rancher/rke2/rke2.yaml: admin credentials, server https://127.0.0.1:6443, 0600."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "default",
                "cluster": {
                    "server": f"https://127.0.0.1:{APISERVER_PORT}",
                    "certificate-authority-data": b64(pki.ca),
                },
            }
        ],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
        "current-context": "default",
        "preferences": {},
        "users": [
            {
                "name": "default",
                "user": {
                    "client-certificate-data": b64(pki.admin),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
    }
    write_private(KUBECONFIG, yaml.safe_dump(document, sort_keys=False).encode())


def sd_notify(message: str) -> None:
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    address = "\0" + target[1:] if target.startswith("@") else target
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


# ---------------------------------------------------------------- add-ons


def default_ingress(version: str) -> str:
    core = version.lstrip("v").split("+")[0].split(".")
    minor = int(core[1]) if len(core) > 1 and core[1].isdigit() else 0
    return "traefik" if minor >= 36 else "ingress-nginx"


def start_addons(config: Config, pki: Pki, etcd: EtcdClient) -> list[ThreadingHTTPServer]:
    """The deploy controller (manifests into the cluster) and the ingress on 80/443."""
    sys.path.insert(0, str(LIBRARY))
    import standin_ingress

    seen: dict[str, str] = {}

    def deploy() -> None:
        while True:
            try:
                standin_ingress.deploy_manifests(MANIFESTS, etcd.put, seen, log)
            except (EtcdError, OSError) as err:
                seen.clear()
                log("warning", f"deploying manifests: {err}")
            time.sleep(MANIFEST_SCAN_SECONDS)

    threading.Thread(target=deploy, daemon=True).start()
    # RKE2's `disable` lists packaged components not to deploy (docs.rke2.io networking:
    # `disable: rke2-coredns`); `ingress-controller` picks traefik and/or ingress-nginx
    # (rancher/rke2#5928; the first listed serves 80/443 here). The default is ingress-nginx,
    # traefik for clusters created by v1.36 and later (rancher/rke2 discussion #10486).
    chosen = _as_list(config.raw.get("ingress-controller"))
    controller = chosen[0] if chosen else default_ingress(VERSION)
    if f"rke2-{controller}" in _as_list(config.raw.get("disable")):
        log("info", f"rke2-{controller} disabled: nothing serves 80/443")
        return []
    ca_pem, ca_key_pem = pki.ca.read_bytes(), pki.ca_key.read_bytes()
    ingress = standin_ingress.Ingress(
        node_name=config.node_name,
        prefix=etcd.prefix,
        issue=lambda host: issue(ca_pem, ca_key_pem, host, [host]),
        # ingress-nginx's default certificate for names no Ingress claims, as clients see it:
        # "O=Acme Co, CN=Kubernetes Ingress Controller Fake Certificate" (kubernetes/ingress-nginx).
        fake=self_signed(
            "Kubernetes Ingress Controller Fake Certificate", "Acme Co", ("ingress.local",)
        ),
        ca_pem=ca_pem,
        ingress_controller=controller,
        rancher_delay=float(os.environ.get("RKE2_STANDIN_RANCHER_DELAY", "5")),
        log=log,
    )
    return list(ingress.serve())


# ---------------------------------------------------------------- main


def run_server() -> int:
    global DEBUG
    config = read_config()
    DEBUG = bool(config.raw.get("debug"))
    log("info", f"Starting rke2 {VERSION} (stand-in)")
    pki = Pki()
    auth_paths = anonymous_paths(config.authentication_config)
    etcd = EtcdClient(client_url("127.0.0.1"), pki)
    servers: list[ThreadingHTTPServer] = []
    states: list[Server] = []

    def serve_early(password: str) -> None:
        state = Server(config, pki, password, etcd, auth_paths)
        states.append(state)
        servers.append(serve(SUPERVISOR_PORT, SupervisorHandler, state, client_ca=False))
        servers.append(serve(APISERVER_PORT, ApiserverHandler, state, client_ca=True))

    if (DB_DIR / "member").exists():
        proc, password = restart(config, pki, serve_early)
    elif config.server:
        proc, password = join(config, pki, serve_early)
    else:
        proc, password = first_server(config, pki, serve_early)
    state = states[0]
    token_text = f"K10{ca_hash(pki.ca.read_bytes())}::server:{password}"
    write_private(SERVER_DIR / "token", token_text.encode() + b"\n")
    write_private(SERVER_DIR / "node-token", token_text.encode() + b"\n")
    MANIFESTS.mkdir(parents=True, exist_ok=True)
    state.heartbeat()
    write_kubeconfig(pki)
    state.ready.set()
    log("info", f"rke2 is up and running ({config.node_name} at {config.node_ip})")
    sd_notify("READY=1")
    servers += start_addons(config, pki, etcd)

    stop = threading.Event()
    threading.Thread(target=manage_learners, args=(state, stop), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(HEARTBEAT_SECONDS):
        if proc.poll() is not None:
            log("fatal", f"etcd exited with code {proc.returncode}")
            return 1
        try:
            state.heartbeat()
        except EtcdError as err:
            log("warning", f"node heartbeat: {err}")
    log("info", "Shutting down")
    for httpd in servers:
        httpd.shutdown()
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    return 0


def main(argv: list[str]) -> int:
    if argv[1:2] in (["--version"], ["-v"]):
        print(f"rke2 version {VERSION} (stand-in)")
        return 0
    if argv[1:2] != ["server"]:
        print(
            "usage: rke2 server | rke2 --version (the stand-in has no other command)",
            file=sys.stderr,
        )
        return 2
    try:
        return run_server()
    except Fatal as err:
        log("fatal", str(err))
        return 1
    except Exception as err:  # a stand-in bug: one fatal line, as RKE2 would log
        log("fatal", f"stand-in error: {type(err).__name__}: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
