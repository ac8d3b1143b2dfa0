"""Every rendered file of a spec, as data: {relative path: RenderedFile}.

`render_files` is pure: the spec, the label of its file and the values read from secret
files (`SecretInputs`) go in, the same bytes come out every time. `read_inputs` is the one
place that touches the disk: it creates the RKE2 token and the Rancher bootstrap password
once (mode 0600, reused by later renders: a token must never change after servers joined)
and reads the health token and the layer-7 certificate and key.

A file is *skipped*, with the reason, when the spec cannot say what it should contain yet:
load balancer configs need every node's address and the DNS record needs the load
balancer's address, which provider aws only assigns at `rke2ha up`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from rke2ha.errors import InvalidError, UsageError
from rke2ha.render.common import DEFAULT_LAYOUT, Layout, nodes_have_addresses
from rke2ha.render.dnszone import dns_files, zone_file_name
from rke2ha.render.haproxy import render_haproxy, render_systemd_dropin, render_token_env
from rke2ha.render.ingress import ingress_files
from rke2ha.render.keepalived import keepalived_files
from rke2ha.render.nginx import render_nginx
from rke2ha.render.rancher import rancher_files
from rke2ha.render.rke2 import rke2_files
from rke2ha.secretfiles import ensure_secret, read_secret
from rke2ha.spec import Spec

HAPROXY_CFG = "haproxy/haproxy.cfg"
NGINX_CONF = "nginx/nginx.conf"


@dataclass(frozen=True)
class RenderedFile:
    text: str
    secret: bool = False  # written mode 0600 through rke2ha.secretfiles


@dataclass(frozen=True)
class SecretInputs:
    """Values from secret files that some rendered files must contain."""

    rke2_token: str
    health_token: str | None = None
    tls_chain_pem: str | None = None  # layer 7: the certificate chain
    tls_key_pem: str | None = None  # layer 7: its private key


@dataclass
class Rendering:
    files: dict[str, RenderedFile] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why

    def add(self, files: dict[str, str], *, secret: bool = False) -> None:
        for path, text in files.items():
            self.files[path] = RenderedFile(text, secret)


def _tls_files(spec: Spec, inputs: SecretInputs, layout: Layout) -> Rendering:
    out = Rendering()
    if inputs.tls_chain_pem is None or inputs.tls_key_pem is None:
        raise InvalidError(
            "load_balancer.tls is required at layer 7: give the certificate and key for "
            f"{spec.hostname} (load_balancer.tls: {{cert: FILE, key: FILE}})"
        )
    host = spec.hostname
    chain = inputs.tls_chain_pem.rstrip("\n") + "\n"
    key = inputs.tls_key_pem.rstrip("\n") + "\n"
    out.add({f"haproxy/tls/{host}.pem": chain + key}, secret=True)
    out.add({f"nginx/tls/{host}.crt": chain})
    out.add({f"nginx/tls/{host}.key": key}, secret=True)
    return out


def _load_balancer_files(
    spec: Spec, spec_label: str, inputs: SecretInputs, layout: Layout, drained: Collection[str]
) -> Rendering:
    out = Rendering()
    lb_paths = [HAPROXY_CFG, NGINX_CONF]
    if not nodes_have_addresses(spec):
        why = "some nodes have no address yet (provider aws assigns them at `rke2ha up`)"
        out.skipped = dict.fromkeys(lb_paths, why)
        return out
    out.add(
        {
            HAPROXY_CFG: render_haproxy(spec, spec_label, layout),
            NGINX_CONF: render_nginx(spec, spec_label, layout, drained),
        }
    )
    if spec.load_balancer.layer == 7:
        tls = _tls_files(spec, inputs, layout)
        out.files.update(tls.files)
    if spec.health_token_file is not None:
        if inputs.health_token is None:
            raise InvalidError("load_balancer.health.token_file: the token was not read")
        out.add({"haproxy/health-token.env": render_token_env(inputs.health_token)}, secret=True)
        out.add({"haproxy/rke2ha-health-token.conf": render_systemd_dropin(layout)})
    out.add(keepalived_files(spec, spec_label))
    return out


def render_files(
    spec: Spec,
    spec_label: str,
    inputs: SecretInputs,
    layout: Layout = DEFAULT_LAYOUT,
    drained: Collection[str] = (),
) -> Rendering:
    """Every file for the spec, sorted by path; pure (same inputs, same bytes). `drained`:
    the nodes `rke2ha lb drain` took out (the state file's), marked down where the engine
    has no runtime control (nginx)."""
    out = _load_balancer_files(spec, spec_label, inputs, layout, drained)
    for path, text in rke2_files(spec, spec_label, inputs.rke2_token, layout).items():
        # config.yaml holds the cluster token; the authentication config holds no secret.
        out.add({path: text}, secret=path.endswith("/config.yaml"))
    out.add(rancher_files(spec, spec_label))
    ingress, ingress_skipped = ingress_files(spec, spec_label)
    out.add(ingress)
    out.skipped.update(ingress_skipped)
    if spec.load_balancer.address or spec.dns.target:
        out.add(dns_files(spec, spec_label))
    else:
        why = "load_balancer.address is not known yet (provider aws assigns it at `rke2ha up`)"
        out.skipped.update(dict.fromkeys([zone_file_name(spec), "dns/nsupdate.txt"], why))
    return Rendering(dict(sorted(out.files.items())), dict(sorted(out.skipped.items())))


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read {what}: {err}") from None


def read_inputs(spec: Spec) -> SecretInputs:
    """Create (once) and read the secrets the rendered files need."""
    token = ensure_secret(spec.rke2_token_file, what="RKE2 token")
    # install.sh reads the bootstrap password at run time; make sure there is one to read.
    ensure_secret(spec.bootstrap_password_file, what="Rancher bootstrap password")
    health_token = None
    if spec.health_token_file is not None:
        health_token = read_secret(spec.health_token_file, what="health token")
    chain = key = None
    tls = spec.load_balancer.tls
    if spec.load_balancer.layer == 7 and tls is not None:
        chain = _read_text(spec.resolve(tls.cert), "load_balancer.tls.cert")
        key = read_secret(spec.resolve(tls.key), what="load_balancer.tls.key")
    return SecretInputs(token, health_token, chain, key)
