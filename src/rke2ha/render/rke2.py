"""`rke2/<node>/config.yaml` for every RKE2 server, and the apiserver authentication config.

What RKE2's HA docs require (https://docs.rke2.io/install/ha), per server:
- the same `token` everywhere (the value comes from the token file; the rendered file holds
  it, so it is written mode 0600);
- `tls-san` with the Rancher hostname and every load balancer address on *every* server:
  each server signs its own apiserver certificate, and a client the load balancer sends to
  a server without the SAN gets a bad-certificate error (rancher/rke2#522);
- `server: https://<hostname>:9345` on every server but the first, which starts the cluster.

With `rke2.anonymous_health`, the servers also get an `AuthenticationConfiguration` that lets
anonymous callers reach `/livez` and `/readyz` only, loaded with
`kube-apiserver-arg: authentication-config=...`, so a load balancer can see real readiness
instead of the 401 RKE2 answers by default. The `anonymous` section and the
`--anonymous-auth` flag exclude each other; RKE2 releases with the fix for rancher/rke2#8137
stop passing `--anonymous-auth=false` when an authentication config is given, so rke2ha sets
no `anonymous-auth` argument of its own. Needs Kubernetes >= 1.32 (v1beta1 `anonymous`).
"""

from __future__ import annotations

from typing import Any

import yaml

from rke2ha.render.common import DEFAULT_LAYOUT, Layout, commented, header_lines
from rke2ha.spec import Spec

AUTHN_API_VERSION = "apiserver.config.k8s.io/v1beta1"
ANONYMOUS_PATHS = ("/livez", "/readyz")


def tls_sans(spec: Spec) -> list[str]:
    """The hostname and every load balancer address, without duplicates, in spec order."""
    sans: list[str] = []
    for name in [spec.hostname, *spec.load_balancer.addresses]:
        if name not in sans:
            sans.append(name)
    return sans


# spec `ingress` -> RKE2's `ingress-controller` value.
RKE2_INGRESS_CONTROLLERS = {"nginx": "ingress-nginx", "traefik": "traefik"}


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)


def server_config(
    spec: Spec, index: int, token: str, layout: Layout = DEFAULT_LAYOUT
) -> dict[str, Any]:
    """The config.yaml content of server `index` (0 is the first server) as data."""
    node = spec.nodes[index]
    config: dict[str, Any] = {"token": token}
    if index > 0:
        config["server"] = spec.registration_url
    config["tls-san"] = tls_sans(spec)
    config["node-name"] = node.name
    config["cni"] = spec.rke2.cni
    # Named, never left to RKE2's default: `ingress-controller` exists since v1.30.3
    # (rancher/rke2#5928) and the default turned from ingress-nginx to traefik for new
    # clusters in v1.36 (rancher/rke2#10037), so the default would make the health path and
    # the ingress HelmChartConfig rke2ha renders depend on the release.
    config["ingress-controller"] = RKE2_INGRESS_CONTROLLERS[spec.ingress]
    if spec.rke2.anonymous_health:
        config["kube-apiserver-arg"] = [
            f"authentication-config={layout.rke2_authentication_config()}"
        ]
    for key, value in spec.rke2.config.items():
        # Keys rke2ha sets itself win (rule `rke2.install` refuses them in rke2.config);
        # list-valued arguments such as kube-apiserver-arg add to rke2ha's own.
        if isinstance(config.get(key), list) and isinstance(value, list):
            config[key] = [*config[key], *value]
        else:
            config.setdefault(key, value)
    return config


def render_server_config(
    spec: Spec, spec_label: str, index: int, token: str, layout: Layout = DEFAULT_LAYOUT
) -> str:
    node = spec.nodes[index]
    count = len(spec.nodes)
    if index == 0:
        role = (
            f"Server 1 of {count} ({node.name}): the first server, it starts the cluster. "
            "Bring it up and wait until it is Ready before joining the others."
        )
    else:
        role = (
            f"Server {index + 1} of {count} ({node.name}): joins through the load balancer at "
            f"{spec.registration_url}."
        )
    notes = [
        *header_lines(spec_label, f"RKE2 server config for {node.name}"),
        f"Install as {layout.rke2_dir}/config.yaml on {node.name}, mode 0600 (it holds the "
        "cluster token), before installing RKE2.",
        role,
        'Join servers ONE AT A TIME: parallel joins fail with "too many learner members".',
    ]
    if spec.rke2.anonymous_health:
        notes.append(
            f"Also install authentication-config.yaml as {layout.rke2_authentication_config()}."
        )
    return "\n".join(commented(notes)) + "\n" + _dump(server_config(spec, index, token, layout))


def authentication_config() -> dict[str, Any]:
    return {
        "apiVersion": AUTHN_API_VERSION,
        "kind": "AuthenticationConfiguration",
        "anonymous": {
            "enabled": True,
            "conditions": [{"path": path} for path in ANONYMOUS_PATHS],
        },
    }


def render_authentication_config(spec_label: str, layout: Layout = DEFAULT_LAYOUT) -> str:
    notes = [
        *header_lines(
            spec_label, "kube-apiserver authentication config: anonymous /livez and /readyz only"
        ),
        f"Install as {layout.rke2_authentication_config()} on every server. Load balancers "
        "then see real readiness (200 or not) instead of the 401 RKE2 answers anonymous callers.",
        "Needs Kubernetes >= 1.32 and an RKE2 release with the fix for rancher/rke2#8137.",
    ]
    return "\n".join(commented(notes)) + "\n" + _dump(authentication_config())


def rke2_files(
    spec: Spec, spec_label: str, token: str, layout: Layout = DEFAULT_LAYOUT
) -> dict[str, str]:
    """{relative path: text}: every server's config.yaml (+ authentication config)."""
    files: dict[str, str] = {}
    for index, node in enumerate(spec.nodes):
        files[f"rke2/{node.name}/config.yaml"] = render_server_config(
            spec, spec_label, index, token, layout
        )
        if spec.rke2.anonymous_health:
            files[f"rke2/{node.name}/authentication-config.yaml"] = render_authentication_config(
                spec_label, layout
            )
    return files
