"""Rules about the Rancher hostname: a valid FQDN, inside the DNS zone, and final."""

from __future__ import annotations

from collections.abc import Iterator

from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, error, info
from rke2ha.rules.names import hostname_problem, in_zone
from rke2ha.spec import Spec


def _fqdn(spec: Spec, facts: Facts) -> Iterator[Issue]:
    problem = hostname_problem(spec.hostname, spec.dns.zone)
    if problem is not None:
        message, fix = problem
        yield error("hostname", f"hostname {spec.hostname!r} {message}", fix)


def _final(spec: Spec, facts: Facts) -> Iterator[Issue]:
    yield info(
        "hostname",
        f"the hostname {spec.hostname} becomes Rancher's server URL; it cannot be changed "
        "after Rancher is installed (downstream clusters register against it)",
        "choose it now; moving later means a new Rancher installation and re-registering "
        "every downstream cluster",
    )


def _in_zone(spec: Spec, facts: Facts) -> Iterator[Issue]:
    # An invalid hostname is hostname.fqdn's finding; do not report it twice.
    if hostname_problem(spec.hostname) is not None:
        return
    if not in_zone(spec.hostname, spec.dns.zone):
        yield error(
            "dns.zone",
            f"hostname {spec.hostname} is not inside the zone {spec.dns.zone}, so the "
            "record cannot be published there",
            f"set dns.zone to the zone that holds {spec.hostname} "
            f"(e.g. {spec.hostname.split('.', 1)[1]}), or pick a hostname in {spec.dns.zone}",
        )


RULES = (
    Rule("hostname.fqdn", "hostname is a lowercase FQDN", sources.INGRESS_HOST, _fqdn),
    Rule("hostname.final", "the hostname is final", sources.TUTORIAL, _final),
    Rule("hostname.in_zone", "hostname inside dns.zone", sources.TUTORIAL, _in_zone),
)
