"""`rancher/ingress-helmchartconfig.yaml`: tell RKE2's ingress to trust the load balancer.

Needed in two cases, both a pairing between the load balancer and the ingress:

- Layer 7 (Rancher `tls: external`): the load balancer ends TLS and sends plain HTTP to
  the nodes' port 80 with `X-Forwarded-Proto: https`. Unless the ingress trusts that header
  it overwrites it with the scheme it saw (http), Rancher redirects to https and the client
  loops (rancher/rancher#31071, #43875, #52316). Rancher docs, Helm chart options, External
  TLS Termination: "Configuring Ingress for External TLS when Using NGINX"
  (https://ranchermanager.docs.rancher.com/getting-started/installation-and-upgrade/
  installation-references/helm-chart-options#external-tls-termination) sets
  `controller.config.use-forwarded-headers: "true"` on `rke2-ingress-nginx`; for Traefik
  the chart's `ports.web.forwardedHeaders.trustedIPs` (rancher/rancher-docs#2001).
- `load_balancer.send_proxy`: every connection to the nodes' 80/443 starts with a PROXY
  protocol header, which the ingress must expect (ingress-nginx ConfigMap
  `use-proxy-protocol: "true"`, kubernetes/ingress-nginx docs/user-guide/
  nginx-configuration/configmap.md; Traefik `ports.<entrypoint>.proxyProtocol.trustedIPs`).

RKE2 applies a `HelmChartConfig` (helm.cattle.io/v1, namespace kube-system, named after
the packaged chart) placed in `/var/lib/rancher/rke2/server/manifests/` on a server node
(RKE2 docs, Helm: "Customizing Packaged Components with HelmChartConfig",
https://docs.rke2.io/helm#customizing-packaged-components-with-helmchartconfig).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import yaml

from rke2ha.render.common import commented, header_lines
from rke2ha.spec import Spec

INGRESS_CONFIG = "rancher/ingress-helmchartconfig.yaml"
MANIFESTS_DIR = "/var/lib/rancher/rke2/server/manifests"
INSTALLED_NAME = "rke2ha-ingress-config.yaml"
API_VERSION = "helm.cattle.io/v1"
KIND = "HelmChartConfig"
CHART_NAMES = {"nginx": "rke2-ingress-nginx", "traefik": "rke2-traefik"}


def needs_ingress_config(spec: Spec) -> bool:
    """Layer 7 (Rancher tls external) or PROXY protocol to the nodes."""
    return spec.rancher_tls_external or spec.load_balancer.send_proxy


def installed_path() -> str:
    """Where RKE2 reads the file on a server node."""
    return f"{MANIFESTS_DIR}/{INSTALLED_NAME}"


def trusted_addresses(spec: Spec) -> list[str]:
    """The load balancer addresses that are IPs (Traefik's trustedIPs takes IPs/CIDRs)."""
    candidates = list(spec.load_balancer.addresses)
    pair = spec.load_balancer.pair
    if pair is not None:
        candidates += [pair.primary, pair.standby]
    out: list[str] = []
    for candidate in candidates:
        try:
            address = str(ipaddress.ip_address(candidate))
        except ValueError:
            continue  # a hostname: Traefik cannot match it against a peer address
        if address not in out:
            out.append(address)
    return out


def _nginx_values(spec: Spec) -> dict[str, Any]:
    config: dict[str, str] = {}
    if spec.rancher_tls_external:
        config["use-forwarded-headers"] = "true"
    if spec.load_balancer.send_proxy:
        config["use-proxy-protocol"] = "true"
    return {"controller": {"config": config}}


def _traefik_values(spec: Spec, trusted: list[str]) -> dict[str, Any]:
    web: dict[str, Any] = {}
    ports: dict[str, Any] = {"web": web}
    if spec.rancher_tls_external:
        web["forwardedHeaders"] = {"trustedIPs": trusted}
    if spec.load_balancer.send_proxy:
        web["proxyProtocol"] = {"trustedIPs": trusted}
        ports["websecure"] = {"proxyProtocol": {"trustedIPs": trusted}}
    return {"ports": ports}


def values(spec: Spec) -> dict[str, Any]:
    """The chart values the HelmChartConfig carries, as data."""
    if spec.ingress == "traefik":
        return _traefik_values(spec, trusted_addresses(spec))
    return _nginx_values(spec)


def document(spec: Spec) -> dict[str, Any]:
    content = yaml.safe_dump(values(spec), sort_keys=False, default_flow_style=False)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": CHART_NAMES[spec.ingress], "namespace": "kube-system"},
        "spec": {"valuesContent": content},
    }


def _why(spec: Spec) -> str:
    reasons = []
    if spec.rancher_tls_external:
        reasons.append("trust the load balancer's X-Forwarded-Proto (layer 7, tls external)")
    if spec.load_balancer.send_proxy:
        reasons.append("expect the PROXY protocol header the load balancer sends")
    return " and ".join(reasons)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks: valuesContent reads like the docs' examples."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def render_ingress_config(spec: Spec, spec_label: str) -> str:
    notes = [
        *header_lines(spec_label, f"the {CHART_NAMES[spec.ingress]} chart must {_why(spec)}"),
        f"Copy to {installed_path()} on every server node (RKE2 applies manifests from "
        f"{MANIFESTS_DIR}/); before RKE2 starts is best, later works too.",
    ]
    if spec.rancher_tls_external:
        notes.append(
            "Without it the ingress tells Rancher the request came over http, Rancher "
            "redirects to https, and browsers loop (rancher/rancher#31071)."
        )
    body = yaml.dump(document(spec), Dumper=_BlockDumper, sort_keys=False, default_flow_style=False)
    return "\n".join(commented(notes)) + "\n" + body


def ingress_files(spec: Spec, spec_label: str) -> tuple[dict[str, str], dict[str, str]]:
    """({path: text}, {path: why skipped}); nothing when the spec needs no such file."""
    if not needs_ingress_config(spec):
        return {}, {}
    if spec.ingress == "traefik" and not trusted_addresses(spec):
        why = (
            "Traefik trusts forwarded headers / PROXY protocol only from listed IPs and the "
            "load balancer's IP is not known yet (set load_balancer.address, or provider aws "
            "assigns it at `rke2ha up`)"
        )
        return {}, {INGRESS_CONFIG: why}
    return {INGRESS_CONFIG: render_ingress_config(spec, spec_label)}, {}
