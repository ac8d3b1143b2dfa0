"""The TLS side of the layer 7 front: a strict server context, and reload without drops.

The context allows TLS 1.2 and 1.3 only, AEAD ciphers with forward secrecy for 1.2 (1.3's
suites are all modern), no compression, no renegotiation, and offers ALPN `http/1.1` (the
front speaks HTTP/1.1 only, so a client offering h2 falls back instead of failing).

Reload: listeners keep the context they were created with, but its SNI callback (which
OpenSSL calls for every ClientHello, with or without a server name) moves each new
handshake onto the newest context. SIGHUP therefore swaps the certificate for new
connections while established ones keep theirs: nothing is dropped. A reload that fails
(unreadable file, key not matching, hostname not covered) keeps the old certificate and
says why.

File reading and the key/SAN questions belong to `rke2ha.tlsfiles`; this module only
turns its answers into contexts and messages.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from rke2ha.secretfiles import is_private
from rke2ha.tlsfiles import TlsFileError, TlsMaterial, load_tls_files

log = logging.getLogger("rke2ha.lb.l7")

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1"
ALPN = ("http/1.1",)


@dataclass(frozen=True, slots=True)
class LoadedCertificate:
    context: ssl.SSLContext
    names: tuple[str, ...]
    not_after: str


def checked_material(
    cert: Path, key: Path, hostname: str | None, *, warn_key_mode: bool = True
) -> TlsMaterial:
    """Read and check a chain and key; errors name the file, the problem and the fix.
    `warn_key_mode`: log a key readable by others (once per load the operator caused)."""
    material = load_tls_files(cert, key)
    if not material.key_matches():
        raise TlsFileError(
            f"{key}: this private key does not belong to the certificate in {cert}; "
            "give the key the certificate was issued for (or re-issue the certificate)"
        )
    if hostname is not None and not material.covers(hostname):
        names = ", ".join(material.subject_alt_names) or "no subjectAltName at all"
        raise TlsFileError(
            f"{cert}: the certificate does not cover {hostname} (it covers: {names}); "
            f"issue one with {hostname} in its subjectAltName"
        )
    if warn_key_mode and not is_private(key):
        log.warning("%s: the private key is readable by others; run: chmod 600 %s", key, key)
    if material.is_expired():
        raise TlsFileError(
            f"{cert}: the certificate expired on {material.not_after:%Y-%m-%d}; "
            "renew it, then start again (or send SIGHUP to a running load balancer)"
        )
    return material


def build_context(material: TlsMaterial) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    )
    context.set_alpn_protocols(list(ALPN))
    try:
        context.load_cert_chain(material.cert_path, material.key_path)
    except ssl.SSLError as err:
        raise TlsFileError(
            f"{material.cert_path}: OpenSSL refused the certificate and key: {err.reason}"
        ) from None
    return context


def load_certificate(
    cert: Path, key: Path, hostname: str | None, *, warn_key_mode: bool = True
) -> LoadedCertificate:
    material = checked_material(cert, key, hostname, warn_key_mode=warn_key_mode)
    return LoadedCertificate(
        context=build_context(material),
        names=material.subject_alt_names,
        not_after=f"{material.not_after:%Y-%m-%dT%H:%M:%SZ}",
    )


class CertificateStore:
    """The certificate being served, swappable while connections stay up."""

    def __init__(self, cert: Path, key: Path, hostname: str | None) -> None:
        self.cert = cert
        self.key = key
        self.hostname = hostname
        # Checked (and a loose key mode warned about) once before serving (`server.run`).
        self.current = load_certificate(cert, key, hostname, warn_key_mode=False)
        self._listening = self.current.context
        self._listening.sni_callback = self._on_client_hello

    @property
    def listening_context(self) -> ssl.SSLContext:
        """The context to give listeners; handshakes move to the newest one."""
        return self._listening

    def reload(self) -> LoadedCertificate:
        """Load the files again; on any error the old certificate stays and the error rises."""
        loaded = load_certificate(self.cert, self.key, self.hostname)
        self.current = loaded
        return loaded

    def _on_client_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: object
    ) -> None:
        context = self.current.context
        if connection.context is not context:
            connection.context = context
