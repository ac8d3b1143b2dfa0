"""A CA the user brings and trusts on the workstation (SSL_CERT_FILE), placed on the first
server before it starts: RKE2 uses CA certificates and keys it finds in
/var/lib/rancher/rke2/server/tls at the first start instead of making its own
(docs.rke2.io/security/certificates, "Using Custom CA Certificates"; a real RKE2 wants the
whole set there — client, server, request-header and etcd CAs — the stand-in uses the
server CA only). The stand-in signs Rancher's certificate with that CA (standing in for
Rancher's own CA), so `up` and `check` verify the chain against the user's trust, as they
would against a private CA the user's machines already trust."""

from __future__ import annotations

from pathlib import Path

from tests.support.certs import write_self_signed
from tests.support.machines import Machine

TLS_DIR = "/var/lib/rancher/rke2/server/tls"


def make_ca(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) of a new self-signed EC P-256 CA (the key type RKE2's CAs have)."""
    return write_self_signed(
        folder / "user-ca.pem", folder / "user-ca.key", "rke2ha-up-live-user-ca", ca=True
    )


def place(machine: Machine, cert: Path, key: Path) -> None:
    """The CA where the first server looks for it (root, 0600), before it ever starts."""
    for source, name in ((cert, "server-ca.crt"), (key, "server-ca.key")):
        machine.sh(
            f"install -d -m 0700 {TLS_DIR} && umask 077 && cat > {TLS_DIR}/{name}",
            input=source.read_text(),
            check=True,
        )
