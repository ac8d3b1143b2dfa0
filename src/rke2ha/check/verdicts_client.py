"""Sans-I/O verdicts for what a Rancher user meets: the DNS record, the HTTP redirect, the
certificate, the websocket, and the spread over nodes.

Same contract as `verdicts` (observation in, `CheckResult` out, no sockets, no clock);
split off so each module stays one screenful of decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from urllib.parse import urlsplit

from cryptography import x509

from rke2ha.check import catalog
from rke2ha.check.observations import SpreadSample, TlsObservation, WebsocketAnswer
from rke2ha.check.result import CheckResult
from rke2ha.check.target import DnsTarget
from rke2ha.check.verdicts import VIEW_UNKNOWN, Seen, join, said, same_name
from rke2ha.dns.records import absolute
from rke2ha.dns.resolve_check import Answer, judge
from rke2ha.tlsfiles import hostname_matches

MIN_CERT_DAYS = 14
REDIRECT_STATUSES = (301, 302, 307, 308)
MODERN_TLS = ("TLSv1.2", "TLSv1.3")


# ---- dns.record ------------------------------------------------------------------------


def dns_record(target: DnsTarget, hostname: str, answer: Answer, server: str) -> CheckResult:
    """The answer for `hostname` must be the expected record type pointing at the LB.

    What "expected" means is `rke2ha.dns.resolve_check` (`expectation`, `judge`), shared
    with `rke2ha dns check`; this adds the check's detail and fix.
    """
    rule, check_id = catalog.DNS_RECORD, "dns.record"
    publish = target.publish
    if target.problem is not None:
        return rule.failed(check_id, target.problem, f"fix the spec ({target.validate})")
    want = f"{target.kind} {hostname} -> {join(target.expected)}"
    if answer.rcode == "TIMEOUT" or answer.rcode.startswith("ERROR"):
        reason = "no answer" if answer.rcode == "TIMEOUT" else answer.rcode.lower()
        return rule.failed(
            check_id,
            f"{reason} from {server} ({target.server_source})",
            f"{target.start}, or point --dns-server at one that serves {hostname}",
        )
    if answer.rcode == "NXDOMAIN":
        return rule.failed(check_id, f"{server}: {hostname} does not exist (NXDOMAIN)", publish)
    if answer.rcode != "NOERROR":
        return rule.failed(
            check_id,
            f"{server} answered {answer.rcode} for {hostname}",
            f"ask a server authoritative for the zone (--dns-server), then {publish}",
        )
    problems = judge(absolute(hostname), target.kind, list(target.expected), answer)
    if problems:
        return rule.failed(
            check_id, f"{server}: {'; '.join(problems)}", f"make the record {want}; {publish}"
        )
    if answer.cname is not None:
        return rule.passed(check_id, f"{hostname} CNAME {answer.cname} ({server})")
    ttl = f", TTL {answer.ttl}" if answer.ttl is not None else ""
    return rule.passed(check_id, f"{hostname} A {join(answer.addresses)} ({server}{ttl})")


# ---- http.redirect ---------------------------------------------------------------------


def http_redirect(seen: Seen, hostname: str, sent_path: str, https_ports: set[int]) -> CheckResult:
    """Port 80 answers 301/302/307/308 to https://<hostname>[:443]<same path>."""
    rule, check_id = catalog.HTTP_REDIRECT, "http.redirect"
    want = f"a redirect to https://{hostname}{sent_path}"
    fix = (
        "let the ingress redirect HTTP to HTTPS (ingress-nginx ssl-redirect, the default "
        "for an Ingress with TLS); at layer 7 the load balancer must redirect"
    )
    if isinstance(seen, str):
        return rule.failed(check_id, seen, fix)
    location = seen.headers.get("location", "")
    if seen.status not in REDIRECT_STATUSES or not location:
        return rule.failed(check_id, f"GET {sent_path} -> {said(seen)}; want {want}", fix)
    url = urlsplit(location)
    path = url.path + (f"?{url.query}" if url.query else "")
    port_ok = url.port is None or url.port in https_ports
    host_ok = url.hostname is not None and same_name(url.hostname, hostname)
    if url.scheme != "https" or not host_ok or not port_ok or path != sent_path:
        return rule.failed(
            check_id, f"GET {sent_path} -> {seen.status} Location {location}; want {want}", fix
        )
    return rule.passed(check_id, f"GET {sent_path} -> {seen.status} {location}")


# ---- tls.certificate -------------------------------------------------------------------


def _san_names(leaf: x509.Certificate) -> list[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def tls_certificate(
    seen: TlsObservation | str, hostname: str, now: datetime, trust: str
) -> CheckResult:
    """Chain verifies against `trust`, SANs cover the hostname, >= 14 days, TLS >= 1.2."""
    rule, check_id = catalog.TLS_CERTIFICATE, "tls.certificate"
    if isinstance(seen, str):
        return rule.failed(check_id, seen, "the load balancer's 443 must accept TLS connections")
    leaf = x509.load_der_x509_certificate(seen.leaf_der)
    names = _san_names(leaf)
    days = (leaf.not_valid_after_utc - now).total_seconds() / 86_400
    problems: list[tuple[str, str]] = []
    if seen.verify_error is not None:
        problems.append(
            (
                f"does not verify against {trust}: {seen.verify_error}",
                "serve a chain issued by a CA clients trust (give the CA with --ca FILE if it "
                "is private), leaf first, intermediates after",
            )
        )
    if not any(hostname_matches(name, hostname) for name in names):
        problems.append(
            (
                f"SANs {join(names)} do not cover {hostname}",
                f"issue the certificate with subjectAltName DNS:{hostname}",
            )
        )
    if days < MIN_CERT_DAYS:
        expired = "expired" if days <= 0 else f"{days:.1f} days left"
        problems.append(
            (
                f"{expired} (not after {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
                f"want >= {MIN_CERT_DAYS} days)",
                "renew the certificate (Rancher's cert-manager renews its own; replace "
                "tls-rancher-ingress for tls_source: secret)",
            )
        )
    if seen.version not in MODERN_TLS:
        problems.append((f"negotiated {seen.version}", "allow TLS 1.2 and 1.3 only"))
    if seen.legacy_version is not None:
        problems.append(
            (
                f"also accepts {seen.legacy_version}",
                "disable TLS 1.0/1.1 (ingress-nginx ssl-protocols: TLSv1.2 TLSv1.3)",
            )
        )
    if problems:
        return rule.failed(
            check_id, "; ".join(p for p, _ in problems), " and ".join(f for _, f in problems)
        )
    return rule.passed(
        check_id,
        f"verified against {trust}, covers {hostname}, {days:.0f} days left, {seen.version}",
    )


# ---- rancher.websocket -------------------------------------------------------------------


def websocket(seen: WebsocketAnswer | str, refused_status: int | None, wait: float) -> CheckResult:
    """The upgrade to /v3/subscribe succeeded through the load balancer."""
    rule, check_id = catalog.RANCHER_WEBSOCKET, "rancher.websocket"
    if isinstance(seen, str):
        if refused_status in (401, 403):
            fix = "give a Rancher API token with --token FILE (Rancher UI: Account & API Keys)"
        elif refused_status is not None:
            fix = (
                "an HTTP hop drops Upgrade/Connection: at layer 7 pass both headers "
                "(proxy_http_version 1.1; proxy_set_header Upgrade/Connection)"
            )
        else:
            fix = "check the rancher.ping and lb.port.443 results first"
        return rule.failed(check_id, f"wss /v3/subscribe: {seen}", fix)
    if seen.first_message is None:
        return rule.passed(check_id, f"websocket opened; no event within {wait:g}s")
    return rule.passed(check_id, f"websocket opened; first event {seen.first_message[:60]!r}")


def websocket_skipped() -> CheckResult:
    return catalog.RANCHER_WEBSOCKET.skipped(
        "rancher.websocket",
        "skipped: Rancher's /v3/subscribe needs a token",
        "pass --token FILE (a Rancher API token) to check websockets",
    )


# ---- lb.spread -------------------------------------------------------------------------


FIX_SPREAD_MISSING = (
    "the load balancer keeps a healthy node out of rotation: look at {view} "
    "(health check path, Host header, ports)"
)


def _missing(missing: set[str], seen: SpreadSample) -> str:
    """Why each missing healthy node got nothing, as far as /status tells."""
    rotation = seen.rotation or {}
    out = {node for node in missing if rotation.get(node) is False}
    unseen = missing - out
    parts = []
    if out:
        parts.append(
            f"{join(out)} healthy but still out of the load balancer's rotation (its "
            f"/status) after {seen.seconds:.1f}s"
        )
    if unseen:
        listed = " and in rotation (its /status)" if all(rotation.get(n) for n in unseen) else ""
        parts.append(f"{join(unseen)} healthy{listed} but got none of {seen.requests} requests")
    return "; ".join(parts)


def _not_required(down: set[str], rotation: Mapping[str, bool | None] | None) -> str:
    """Nodes the node checks report down: named, with where the load balancer has them."""
    if not down:
        return ""
    where = {True: "still in rotation", False: "out of rotation"}
    states = rotation or {}
    named = []
    for node in sorted(down):
        state = states.get(node)
        named.append(node if state is None else f"{node} ({where[state]})")
    return f"; not required, down in the node checks: {', '.join(named)}"


def spread(
    healthy: Iterable[str],
    seen: SpreadSample,
    *,
    header: str,
    lab: bool,
    known: Iterable[str],
    view: str = VIEW_UNKNOWN,
) -> CheckResult:
    """Every healthy node must have served at least one of the requests.

    Nodes the node checks report down are not required (those checks already fail); the
    detail names them and, with the load balancer's /status, whether it still sends them
    traffic. A healthy node that got nothing fails, in rotation or not: out of rotation
    for the whole sampling time means the balancer's health checks disagree with ours.
    """
    rule, check_id = catalog.LB_SPREAD, "lb.spread"
    healthy_set, known_set = set(healthy), set(known)
    served_by = {name: count for name, count in seen.served.items() if name}
    requests, failures = seen.requests, seen.failures
    counts = ", ".join(f"{name} {count}" for name, count in sorted(served_by.items()))
    lost = f"; {failures} of {requests} requests failed" if failures else ""
    if not served_by:
        if not lab and failures < requests:
            return rule.skipped(
                check_id,
                f"skipped: responses do not say which node served them (no {header} header)",
                "only the lab's nodes can be told apart; look at the load balancer's "
                "per-backend counters instead",
            )
        return rule.failed(
            check_id,
            f"no response named its node ({failures} of {requests} requests failed)",
            "the load balancer sends no traffic to any node: see lb.port.443",
        )
    strangers = set(served_by) - known_set
    if strangers:
        return rule.failed(
            check_id,
            f"served by {join(strangers)}, not in the spec ({counts})",
            "the load balancer's backends differ from spec.nodes: reload it "
            "(SIGHUP) or re-run `rke2ha up`",
        )
    if not healthy_set:
        return rule.failed(
            check_id, f"no node is healthy ({counts}{lost})", "see the node.* checks"
        )
    missing = healthy_set - set(served_by)
    if missing:
        return rule.failed(
            check_id,
            f"{_missing(missing, seen)} ({counts}{lost})",
            FIX_SPREAD_MISSING.format(view=view),
        )
    aside = _not_required(known_set - healthy_set, seen.rotation)
    return rule.passed(
        check_id, f"{requests} requests over {len(served_by)} nodes: {counts}{lost}{aside}"
    )
