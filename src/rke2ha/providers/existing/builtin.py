"""The built-in engine's version: a copy of the spec that `rke2ha lb serve -f` reads.

The copy has every file path made absolute (it sits in the state folder, not next to the
spec). At layer 7 the certificate chain and key are first checked with the loader the
layer 7 server itself uses (`load_certificate`: readable PEM, key matching the
certificate, hostname covered, not expired), then copied into the version folder as
haproxy's and nginx's are. The copy names them through the `current` link
(`<root>/current/builtin/tls.crt`): the server keeps the paths it started with and reads
them again on SIGHUP, so a reload serves the new version's certificate and pruning the old
version takes nothing from the running process.

A SIGHUP applies every change of the copy at both layers (`lb/server.py`: frontends,
nodes, checks, the layer 7 settings, the certificate, the admin endpoint), so a new
version is always a reload of the running engine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from rke2ha.errors import InvalidError, Rke2haError, UsageError
from rke2ha.lb.config import from_spec
from rke2ha.lb.l7.tls import load_certificate
from rke2ha.providers.existing.engines import CONFIG_PATHS, EnginePaths
from rke2ha.render import RenderedFile, Rendering
from rke2ha.secretfiles import read_secret
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec

# Where a layer 7 version keeps its copies, next to the spec copy (`builtin/lb-spec.yaml`).
TLS_CERT = "builtin/tls.crt"
TLS_KEY = "builtin/tls.key"


@dataclass(frozen=True)
class BuiltinVersion:
    fingerprint: str
    files: Rendering


def read_tls_pem(spec: Spec) -> tuple[str, str]:
    """The chain and key text of `load_balancer.tls` (the key must be mode 0600)."""
    tls = spec.load_balancer.tls
    if tls is None:
        raise InvalidError("load_balancer.tls is not set; layer 7 needs {cert: FILE, key: FILE}")
    cert_path = spec.resolve(tls.cert)
    try:
        chain = cert_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{cert_path}: cannot read load_balancer.tls.cert: {err}") from None
    key = read_secret(spec.resolve(tls.key), what="load_balancer.tls.key")
    return chain, key


def check_tls_files(cert: Path, key: Path, hostname: str) -> None:
    """Load the pair as the layer 7 server will; the error names the field at fault.

    The loader's messages start with the file at fault, which tells the certificate from
    the key. The error keeps its kind: unreadable is exit 2, unusable exit 1.
    """
    try:
        load_certificate(cert, key, hostname)
    except Rke2haError as err:
        message = str(err)
        if cert != key and message.startswith(str(key)):
            field = "load_balancer.tls.key"
        elif message.startswith(str(cert)):
            field = "load_balancer.tls.cert"
        else:
            field = "load_balancer.tls"
        kind = UsageError if isinstance(err, UsageError) else InvalidError
        raise kind(f"{field}: {message}") from None


def running_tls_paths(spec: Spec) -> tuple[Path, Path]:
    """The certificate and key as the running engine names them (through `current`)."""
    current = EnginePaths.under(spec.state_dir, "builtin").current
    return current / TLS_CERT, current / TLS_KEY


def _spec_copy(spec: Spec) -> dict[str, Any]:
    data: dict[str, Any] = spec.model_dump(mode="json", exclude_none=True)
    lb = data["load_balancer"]
    if spec.health_token_file is not None:
        lb["health"]["token_file"] = str(spec.health_token_file)
    if spec.load_balancer.tls is not None:
        if spec.load_balancer.layer == 7:
            cert, key = running_tls_paths(spec)
        else:  # ignored at layer 4, but the copy must still load
            cert = spec.resolve(spec.load_balancer.tls.cert)
            key = spec.resolve(spec.load_balancer.tls.key)
        lb["tls"] = {"cert": str(cert), "key": str(key)}
    data.setdefault("rke2", {})["token_file"] = str(spec.rke2_token_file)
    data.setdefault("rancher", {})["bootstrap_password_file"] = str(spec.bootstrap_password_file)
    rfc2136 = spec.dns.rfc2136
    if rfc2136 is not None:
        data["dns"]["rfc2136"]["key_file"] = str(spec.resolve(rfc2136.key_file))
    transfer_key = spec.dns.builtin.transfer_key
    if transfer_key is not None:
        data["dns"]["builtin"]["transfer_key"]["key_file"] = str(
            spec.resolve(transfer_key.key_file)
        )
    return data


def _spec_file(spec: Spec) -> RenderedFile:
    return RenderedFile(yaml.safe_dump(_spec_copy(spec), sort_keys=True))


def builtin_version(spec: Spec) -> BuiltinVersion:
    """The version the spec asks the built-in engine to run, without writing anything.

    Its fingerprint is the load balancer's config (it ignores spec parts the engine does
    not read, such as DNS and Rancher, so changing those does not reload it) and, at
    layer 7, the certificate and key copied.
    """
    try:
        config = from_spec(spec)
    except (InvalidError, UsageError) as err:
        raise InvalidError(f"the built-in load balancer rejects the spec: {err}") from None
    files = Rendering({CONFIG_PATHS["builtin"]: _spec_file(spec)})
    if config.l7 is not None:
        # Read (the key must be private) and checked before anything is written or signalled.
        chain, key = read_tls_pem(spec)
        check_tls_files(config.l7.cert, config.l7.key, spec.hostname)
        cert_path, key_path = running_tls_paths(spec)
        config = replace(config, l7=replace(config.l7, cert=cert_path, key=key_path))
        files.files[TLS_CERT] = RenderedFile(chain.rstrip("\n") + "\n")
        files.files[TLS_KEY] = RenderedFile(key.rstrip("\n") + "\n", secret=True)
    digest = hashlib.sha256(repr(config).encode())
    for path in sorted(files.files):
        if path != CONFIG_PATHS["builtin"]:
            digest.update(f"\0{path}\0{files.files[path].text}".encode())
    return BuiltinVersion(digest.hexdigest(), files)


def load_served_spec(config_file: Path) -> Spec:
    """`config_file` loaded as `lb serve -f` loads it (the certificate files aside)."""
    try:
        spec = load_spec(config_file)
        from_spec(spec)
    except (InvalidError, UsageError) as err:
        raise InvalidError(f"the built-in load balancer rejects {config_file}: {err}") from None
    return spec


def check_builtin(config_file: Path) -> None:
    """The built-in engine's check: load the written version as `lb serve -f` will.

    At layer 7 the certificate and key checked are the version's own copies (the spec copy
    names them through `current`, which still points at the running version).
    """
    spec = load_served_spec(config_file)
    if spec.load_balancer.layer == 7:
        base = config_file.parent.parent
        try:
            load_certificate(base / TLS_CERT, base / TLS_KEY, spec.hostname)
        except Rke2haError as err:
            what = f"the built-in load balancer rejects the certificate copied to {base}"
            raise InvalidError(f"{what}: {err}") from None
