"""Redirect loops through the load balancer: where the next hop goes, and the verdict.

A browser follows a redirect to the same https URL forever (it gives up with "too many
redirects"). That is what a layer 7 load balancer in front of an ingress that does not
trust its `X-Forwarded-Proto` produces: the ingress tells Rancher "http" and Rancher
answers 302 to https, the very URL the client asked for (rancher/rancher#31071, #43875,
#52316). Rancher serves `/ping` and `/health*` on plain http without redirecting
(rancher/dynamiclistener redirect.go), so `rancher.ping` never sees the loop: the check
asks for Rancher's UI (`/`) as a browser does and follows redirects that stay on the
Rancher URL, up to `MAX_HOPS`.

Pure: `next_hop` and `verdict` take what the probes saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from rke2ha.check import catalog
from rke2ha.check.observations import HttpAnswer
from rke2ha.check.result import CheckResult
from rke2ha.check.verdicts import FIX_LB_DOWN, START_UNKNOWN, said, same_name
from rke2ha.check.verdicts_client import REDIRECT_STATUSES

START_PATH = "/"
MAX_HOPS = 5
CHECK_ID = "rancher.redirect"
INGRESS_CONFIG = "rancher/ingress-helmchartconfig.yaml"
MANIFESTS_DIR = "/var/lib/rancher/rke2/server/manifests/"


@dataclass(frozen=True)
class Hop:
    path: str  # path and query asked for
    answer: HttpAnswer


def next_hop(answer: HttpAnswer, hostname: str, https_ports: set[int]) -> str | None:
    """The path a redirect sends the client to on the same Rancher URL, else None.

    "Same URL" is https, the Rancher hostname, and no port, 443 or the load balancer's
    https port (the lab's offset port): a browser would come back to this load balancer.
    """
    location = answer.headers.get("location", "")
    if answer.status not in REDIRECT_STATUSES or not location:
        return None
    if location.startswith("/"):  # a relative reference keeps scheme and authority
        return location
    url = urlsplit(location)
    if url.scheme.lower() != "https" or url.hostname is None:
        return None
    if not same_name(url.hostname, hostname):
        return None
    if url.port is not None and url.port not in https_ports:
        return None
    return (url.path or "/") + (f"?{url.query}" if url.query else "")


def _fix(layer: int) -> str:
    if layer == 7:
        return (
            "the ingress does not trust the load balancer's X-Forwarded-Proto, so Rancher is "
            f"told http and redirects to https: install {INGRESS_CONFIG} (from `rke2ha "
            f"render`) into {MANIFESTS_DIR} on every server node; RKE2 applies it to its "
            "ingress (use-forwarded-headers / Traefik forwardedHeaders.trustedIPs)"
        )
    return (
        "something in front of the ingress ends TLS and sends plain http: keep layer 4 "
        "passthrough to the nodes' 443, or use `load_balancer.layer: 7` with the "
        f"{INGRESS_CONFIG} that `rke2ha render` writes, installed into {MANIFESTS_DIR}"
    )


def verdict(
    hops: list[Hop] | str,
    looped_to: str | None,
    layer: int,
    where: str,
    start: str = START_UNKNOWN,
) -> CheckResult:
    """`hops`: what each request got (or why the first failed); `looped_to`: a path asked
    for twice (the loop), None when the chain ended."""
    rule = catalog.RANCHER_REDIRECT
    if isinstance(hops, str):
        return rule.failed(CHECK_ID, hops, FIX_LB_DOWN.format(start=start, where=where))
    chain = " -> ".join(f"{hop.path} {hop.answer.status}" for hop in hops)
    if looped_to is not None:
        return rule.failed(
            CHECK_ID,
            f"redirect loop: GET {chain} -> {looped_to} again (Location "
            f"{hops[-1].answer.headers.get('location', '')}); browsers stop with too many "
            "redirects",
            _fix(layer),
        )
    last = hops[-1].answer
    if len(hops) > MAX_HOPS and last.status in REDIRECT_STATUSES:
        return rule.failed(CHECK_ID, f"more than {MAX_HOPS} redirects: GET {chain}", _fix(layer))
    return rule.passed(CHECK_ID, f"GET {chain} ({said(last)})")
