"""Rules about RKE2 itself: version gates for what the rendered server config asks of it.

`rke2.anonymous_health` renders an `AuthenticationConfiguration` with an `anonymous`
section (v1beta1, Kubernetes >= 1.32) and no `--anonymous-auth` argument. Older RKE2 passes
`--anonymous-auth=false` itself, which the apiserver refuses beside an `anonymous` section
("--anonynous-auth flag cannot be set when anonymous field is configured", k3s-io/k3s#12277),
so the apiserver does not start. RKE2 stopped doing that in rancher/rke2#8137, backported to
1.33 (#8245) and 1.32 (#8246); the first releases with it are v1.33.2+rke2r1 and
v1.32.6+rke2r1, and every 1.34 or later. 1.31's backport (#8247) needs feature gates and the
v1alpha1 API, which rke2ha does not render.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, error, warning
from rke2ha.spec import Spec

# (major, minor) -> first patch release with the fix; minors above the last have it always.
ANONYMOUS_FIXED: dict[tuple[int, int], int] = {(1, 32): 6, (1, 33): 2}
ALWAYS_FIXED_FROM = (1, 34)
SUPPORTED = "v1.32.6+rke2r1 or later 1.32, v1.33.2+rke2r1 or later 1.33, or any 1.34+"
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[+-].*)?$")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """`v1.32.6+rke2r1` -> (1, 32, 6); None when it is not such a version."""
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def anonymous_health_supported(version: tuple[int, int, int]) -> bool:
    major, minor, patch = version
    if (major, minor) >= ALWAYS_FIXED_FROM:
        return True
    first = ANONYMOUS_FIXED.get((major, minor))
    return first is not None and patch >= first


def _version_field(spec: Spec) -> tuple[str, str | None]:
    """(spec path, value) of the RKE2 version the servers will run, where the spec says."""
    if spec.provider == "aws" and spec.aws is not None:
        return "aws.rke2_version", spec.aws.rke2_version
    return "rke2.version", spec.rke2.version


def _anonymous_health(spec: Spec, facts: Facts) -> Iterator[Issue]:
    if not spec.rke2.anonymous_health:
        return
    path, text = _version_field(spec)
    instead = (
        "or set rke2.anonymous_health: false (the NLB's /readyz checks then accept 401: "
        "apiserver up, readiness unknown)"
        if spec.provider == "aws"
        else "or set rke2.anonymous_health: false and give the checks a token "
        "(load_balancer.health.token_file)"
    )
    if text is None:
        if spec.provider == "lab":
            return  # the lab's emulators have no apiserver flags to refuse
        yield warning(
            "rke2.anonymous_health",
            "rke2.anonymous_health needs an RKE2 with the fix of rancher/rke2#8137 "
            f"({SUPPORTED}); the spec does not say which RKE2 the servers run, so rke2ha "
            "cannot check it, and on an older one the apiserver does not start",
            f"verify `rke2 --version` on every server shows {SUPPORTED} before installing "
            f"the rendered config, {instead}",
        )
        return
    version = parse_version(text)
    if version is None:
        yield warning(
            path,
            f"{text!r} is not an RKE2 version like v1.32.6+rke2r1, so rke2ha cannot tell "
            "whether it supports rke2.anonymous_health",
            f"give the version as vMAJOR.MINOR.PATCH+rke2rN ({SUPPORTED})",
        )
    elif not anonymous_health_supported(version):
        yield error(
            path,
            f"RKE2 {text} cannot run rke2.anonymous_health: it passes --anonymous-auth=false "
            "itself, which the apiserver refuses beside the rendered anonymous section, so "
            "the apiserver does not start (fixed in rancher/rke2#8137)",
            f"use RKE2 {SUPPORTED}, {instead}",
        )


# RKE2's packaged ingress charts; `disable: <chart>` in config.yaml removes one (`rke2 server
# --help`, "--disable ... valid items: rke2-coredns, rke2-ingress-nginx, rke2-metrics-server";
# https://docs.rke2.io/reference/server_config). The Traefik chart is rke2-traefik
# (`ingress-controller: traefik`, rancher/rke2#5928).
INGRESS_CHARTS = {"nginx": "rke2-ingress-nginx", "traefik": "rke2-traefik"}
COMPONENTS_SOURCE = (
    "RKE2 docs: Server Configuration Reference, --disable "
    "(https://docs.rke2.io/reference/server_config); RKE2 docs: Basic Network Options, "
    "cni: none (https://docs.rke2.io/networking/basic_network_options)"
)


def _disabled(config: dict[str, object]) -> set[str]:
    """The charts `disable` names: a list, or one string (comma-separated, as the flag)."""
    value = config.get("disable")
    items = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return {part.strip() for item in items for part in str(item).split(",") if part.strip()}


def _components(spec: Spec, facts: Facts) -> Iterator[Issue]:
    chart = INGRESS_CHARTS[spec.ingress]
    if chart in _disabled(spec.rke2.config):
        yield error(
            "rke2.config.disable",
            f"rke2.config disables {chart}, the ingress the spec uses (ingress: "
            f"{spec.ingress}): nothing would answer on the nodes' ports 80 and 443, so every "
            "health check fails and Rancher is unreachable",
            f"remove {chart} from rke2.config.disable, or set ingress to the controller you run",
        )
    if spec.rke2.cni == "none":
        yield warning(
            "rke2.cni",
            "cni: none deploys no network plugin: the nodes stay NotReady, and Rancher does "
            "not start, until you install a CNI yourself",
            "pick one of canal, calico, cilium, flannel, or install your CNI before Rancher",
        )


RULES = (
    Rule(
        "rke2.components",
        "RKE2 keeps the ingress the spec uses, and a CNI",
        COMPONENTS_SOURCE,
        _components,
    ),
    Rule(
        "rke2.anonymous_health",
        "anonymous health endpoints only on an RKE2 that supports them",
        sources.RKE2_ANONYMOUS,
        _anonymous_health,
    ),
)
