"""What a lab needs on disk before any process starts: CA, certificates, health token.

Layout (default folder: `<spec dir>/.rke2ha/lab/pki`, overridable with `--ca-dir`):

    ca.crt  ca.key            the lab CA (key 0600); hand ca.crt to clients (--cacert)
    ingress.crt ingress.key   the Rancher hostname (+ load balancer IPs): node port 443 and
                              the layer-7 load balancer serve it, like Rancher's own cert
    nodes/<name>.crt/.key     one per node for 6443 and 9345, with the SANs RKE2 puts in its
                              serving certs: the node's name and address, the hostname and
                              load balancer address (`tls-san`), localhost, kubernetes.*

The health token (a bearer token 6443 accepts, like a service-account token an operator
would give the load balancer) is `load_balancer.health.token_file` when the spec names
one, else `.rke2ha/secrets/<name>-health-token`; created once, mode 0600.

`ensure_lab_material` is idempotent and safe to call from several processes at once
(three node emulators spawned together): it holds an exclusive lock on the folder, reuses
the CA, and reissues a leaf only when it is missing, not signed by this CA, lists other
names than the spec needs now, or expires within `RENEW_BEFORE`. With `renew=False` (the
node emulator's own call) it only creates what is missing and serves whatever is there,
so a test can plant an expired or wrong certificate and see the checks catch it; renewing
is the job of `up`.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rke2ha.errors import UsageError
from rke2ha.lab.ca import LabCA, load_certificate, split_names
from rke2ha.secretfiles import ensure_secret
from rke2ha.spec import Node, Spec

RENEW_BEFORE = timedelta(days=30)
# The in-cluster names kube-apiserver's serving certificate always carries.
KUBERNETES_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class LabPki:
    """Where the lab's PEM files live inside one folder."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def ingress_cert(self) -> Path:
        return self.directory / "ingress.crt"

    @property
    def ingress_key(self) -> Path:
        return self.directory / "ingress.key"

    def node_cert(self, node_name: str) -> Path:
        return self.directory / "nodes" / f"{node_name}.crt"

    def node_key(self, node_name: str) -> Path:
        return self.directory / "nodes" / f"{node_name}.key"


@dataclass(frozen=True)
class LabMaterial:
    """The files every lab process reads: the PKI folder and the health token file."""

    pki: LabPki
    health_token_file: Path


def default_pki_dir(spec: Spec) -> Path:
    return spec.state_dir / "lab" / "pki"


def health_token_file(spec: Spec) -> Path:
    """The bearer token 6443 accepts: the spec's health token file, else the lab's own."""
    return spec.health_token_file or spec.state_dir / "secrets" / f"{spec.name}-health-token"


def find_node(spec: Spec, name: str) -> Node:
    """The node called `name`; UsageError naming the nodes there are when it is unknown."""
    for node in spec.nodes:
        if node.name == name:
            return node
    known = ", ".join(node.name for node in spec.nodes) or "none"
    raise UsageError(f"no node named {name!r} in the spec (nodes: {known})")


def ingress_names(spec: Spec) -> list[str]:
    """SANs of the Rancher hostname certificate: the hostname and the LB's addresses."""
    return [spec.hostname, *spec.load_balancer.addresses]


def node_names(spec: Spec, node: Node) -> list[str]:
    """SANs of a node's 6443/9345 certificate, as RKE2 builds them (with `tls-san`)."""
    names = [node.name, spec.hostname, *spec.load_balancer.addresses, "localhost"]
    names += KUBERNETES_NAMES
    if node.address:
        names.append(node.address)
    names.append("127.0.0.1")
    return names


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_or_create_ca(pki: LabPki) -> LabCA:
    """The CA in `pki`, created the first time (or when it is about to expire)."""
    if pki.ca_cert.exists() or pki.ca_key.exists():
        ca = LabCA.load(pki.ca_cert, pki.ca_key)
        if ca.is_valid(datetime.now(UTC) + RENEW_BEFORE):
            return ca
    ca = LabCA.create()
    ca.save(pki.ca_cert, pki.ca_key)
    return ca


def _leaf_is_current(ca: LabCA, cert_path: Path, key_path: Path, names: list[str]) -> bool:
    cert = load_certificate(cert_path)
    if cert is None or not key_path.exists() or not ca.issued(cert):
        return False
    if cert.not_valid_after_utc < datetime.now(UTC) + RENEW_BEFORE:
        return False
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    want_dns, want_ips = split_names(names)
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    return have_dns == set(want_dns) and have_ips == set(want_ips)


def _ensure_leaf(
    ca: LabCA, cert_path: Path, key_path: Path, names: list[str], *, renew: bool
) -> None:
    if not renew and cert_path.exists() and key_path.exists():
        return
    if not _leaf_is_current(ca, cert_path, key_path, names):
        ca.issue(names).save(cert_path, key_path)


def ensure_lab_material(
    spec: Spec, pki_dir: Path | None = None, *, renew: bool = True
) -> LabMaterial:
    """Create what is missing (CA, ingress and node certificates, health token).

    With `renew` (the default, what `up` wants) leaves that are stale for the spec are
    reissued too; without it, existing files are used as they are.
    """
    pki = LabPki((pki_dir or default_pki_dir(spec)).resolve())
    token_file = health_token_file(spec)
    with _locked(pki.directory):
        if renew or not (pki.ca_cert.exists() and pki.ca_key.exists()):
            ca = load_or_create_ca(pki)
        else:
            ca = LabCA.load(pki.ca_cert, pki.ca_key)
        leaves = [(pki.ingress_cert, pki.ingress_key, ingress_names(spec))]
        leaves += [
            (pki.node_cert(node.name), pki.node_key(node.name), node_names(spec, node))
            for node in spec.nodes
        ]
        for cert_path, key_path, names in leaves:
            _ensure_leaf(ca, cert_path, key_path, names, renew=renew)
        ensure_secret(token_file, what="health token")
    return LabMaterial(pki, token_file)
