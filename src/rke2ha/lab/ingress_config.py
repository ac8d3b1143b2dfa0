"""Read an ingress `HelmChartConfig` into the emulator's `IngressSettings`.

The lab feeds its node emulators the very file `rke2ha render` writes
(`rancher/ingress-helmchartconfig.yaml`), read the way the charts read their values: for
`rke2-ingress-nginx` the ConfigMap keys `controller.config.use-forwarded-headers` and
`use-proxy-protocol` (strings "true"/"false", ingress-nginx
docs/user-guide/nginx-configuration/configmap.md); for `rke2-traefik`
`ports.web.forwardedHeaders.trustedIPs` and `ports.web.proxyProtocol.trustedIPs` (the
Traefik chart's values). So a wrong or missing key in the rendered file shows in the lab
as it would on a cluster: the ingress does not trust the load balancer.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from rke2ha.errors import InvalidError, UsageError
from rke2ha.lab.ingress_model import IngressSettings

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CHARTS = ("rke2-ingress-nginx", "rke2-traefik")


def _mapping(value: Any, where: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidError(f"{source}: {where} must be a mapping")
    return value


def _networks(value: Any, where: str, source: str) -> tuple[IpNetwork, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidError(f"{source}: {where} must be a list of IPs or CIDRs")
    try:
        return tuple(ipaddress.ip_network(str(item), strict=False) for item in value)
    except ValueError as err:
        raise InvalidError(f"{source}: {where}: {err}") from None


def parse_ingress_config(text: str, source: str) -> IngressSettings:
    """IngressSettings from a HelmChartConfig document; InvalidError naming the field."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InvalidError(f"{source}: not YAML: {err}") from None
    document = _mapping(document, "the document", source)
    if document.get("kind") != "HelmChartConfig":
        raise InvalidError(f"{source}: kind must be HelmChartConfig")
    name = _mapping(document.get("metadata"), "metadata", source).get("name")
    if name not in _CHARTS:
        raise InvalidError(f"{source}: metadata.name must be one of {', '.join(_CHARTS)}")
    content = _mapping(document.get("spec"), "spec", source).get("valuesContent", "")
    try:
        chart_values = _mapping(yaml.safe_load(content or "{}"), "spec.valuesContent", source)
    except yaml.YAMLError as err:
        raise InvalidError(f"{source}: spec.valuesContent is not YAML: {err}") from None
    if name == "rke2-ingress-nginx":
        controller = _mapping(chart_values.get("controller"), "controller", source)
        config = _mapping(controller.get("config"), "controller.config", source)
        # ConfigMap values are strings; the controller parses "true" as true.
        return IngressSettings(
            use_forwarded_headers=str(config.get("use-forwarded-headers", "")).lower() == "true",
            proxy_protocol=str(config.get("use-proxy-protocol", "")).lower() == "true",
        )
    web = _mapping(
        _mapping(chart_values.get("ports"), "ports", source).get("web"), "ports.web", source
    )
    forwarded = _networks(
        _mapping(web.get("forwardedHeaders"), "ports.web.forwardedHeaders", source).get(
            "trustedIPs"
        ),
        "ports.web.forwardedHeaders.trustedIPs",
        source,
    )
    proxied = _networks(
        _mapping(web.get("proxyProtocol"), "ports.web.proxyProtocol", source).get("trustedIPs"),
        "ports.web.proxyProtocol.trustedIPs",
        source,
    )
    return IngressSettings(
        use_forwarded_headers=bool(forwarded),
        proxy_protocol=bool(proxied),
    )


def read_ingress_config(path: Path) -> IngressSettings:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: ingress config not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read the ingress config: {err}") from None
    return parse_ingress_config(text, str(path))
