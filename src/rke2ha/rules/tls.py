"""Rule `lb.layer7_tls`: who terminates TLS, and whether the layer-7 certificate will do.

At layer 4 TLS ends at the ingress on every node (Rancher's own certificate); at layer 7
it ends at the load balancer, which needs a certificate and key for the hostname, and
Rancher must be installed with `tls=external` so it trusts X-Forwarded-Proto.
"""

from __future__ import annotations

from collections.abc import Iterator

from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, error, info, warning
from rke2ha.spec import Spec
from rke2ha.tlsfiles import TlsMaterial

EXPIRY_WARNING_DAYS = 30


def _layer7_tls(spec: Spec, facts: Facts) -> Iterator[Issue]:
    lb = spec.load_balancer
    if lb.layer == 4:
        yield from _layer4(spec)
        return
    if spec.rancher.tls_source != "external":
        yield error(
            "rancher.tls_source",
            f"layer 7 terminates TLS at the load balancer, but rancher.tls_source is "
            f"{spec.rancher.tls_source}: Rancher would redirect the plain HTTP it receives "
            "back to HTTPS, in a loop",
            "set rancher.tls_source: external (helm --set tls=external), or use layer: 4",
        )
    if lb.tls is None:
        yield error(
            "load_balancer.tls",
            "layer 7 terminates TLS at the load balancer, but no certificate is given",
            f"add load_balancer.tls: {{cert: FILE, key: FILE}} with a certificate for "
            f"{spec.hostname}, or use layer: 4 (TLS ends at the ingress)",
        )
        return
    if facts.tls is not None and facts.tls.made_by_lab:
        yield info(
            "load_balancer.tls",
            "the lab's own certificate for the hostname: `rke2ha up` issues it from the lab CA",
            "nothing to do; it is checked like any other certificate once it exists",
        )
        return
    if facts.tls is None or facts.tls.material is None:
        problem = facts.tls.problem if facts.tls is not None else "not read"
        yield error(
            "load_balancer.tls",
            f"the layer-7 certificate cannot be used: {problem}",
            "point load_balancer.tls.cert and .key at readable PEM files",
        )
        return
    yield from _material(spec, facts, facts.tls.material)


def _layer4(spec: Spec) -> Iterator[Issue]:
    if spec.rancher.tls_source == "external":
        yield error(
            "rancher.tls_source",
            "rancher.tls_source is external, but at layer 4 nothing in front of Rancher "
            "terminates TLS: browsers would get plain HTTP on 443",
            "use rancher, letsEncrypt or secret at layer 4, or set load_balancer.layer: 7",
        )
    if spec.load_balancer.tls is not None:
        yield warning(
            "load_balancer.tls",
            "load_balancer.tls is ignored at layer 4: TLS passes through to the ingress",
            "remove load_balancer.tls, or set load_balancer.layer: 7",
        )


def _material(spec: Spec, facts: Facts, material: TlsMaterial) -> Iterator[Issue]:
    cert, key = material.cert_path, material.key_path
    if not material.key_matches():
        yield error(
            "load_balancer.tls.key",
            f"the key in {key} does not belong to the certificate in {cert}",
            "give the key the certificate was issued for (their public keys must be equal)",
        )
    if not material.covers(spec.hostname):
        names = ", ".join(material.subject_alt_names) or "no subjectAltName at all"
        yield error(
            "load_balancer.tls.cert",
            f"the certificate in {cert} does not cover {spec.hostname} (it names {names}); "
            "browsers and downstream clusters would refuse it",
            f"use a certificate with {spec.hostname} (or *.{spec.hostname.split('.', 1)[-1]}) "
            "in its subjectAltName",
        )
    days = material.days_left(facts.now)
    expiry = material.not_after.strftime("%Y-%m-%d %H:%M UTC")
    if days <= 0:
        yield error(
            "load_balancer.tls.cert",
            f"the certificate in {cert} expired on {expiry}",
            "renew the certificate and point load_balancer.tls.cert at the new one",
        )
    elif days < EXPIRY_WARNING_DAYS:
        yield warning(
            "load_balancer.tls.cert",
            f"the certificate in {cert} expires in {days:.0f} days ({expiry})",
            "renew it before then",
        )
    if material.is_not_yet_valid(facts.now):
        yield error(
            "load_balancer.tls.cert",
            f"the certificate in {cert} is not valid before "
            f"{material.not_before.strftime('%Y-%m-%d %H:%M UTC')}",
            "check the clock of the machine that issued it, or wait",
        )
    for problem in material.chain_problems():
        yield warning(
            "load_balancer.tls.cert",
            f"{cert}: {problem}; clients may fail to build the chain",
            "order the file leaf first, then each issuer",
        )
    key_fact = facts.file(key)
    if key_fact.exists and not key_fact.private:
        # An error, as for every secret file: the engines' renderers refuse to read it.
        yield error(
            "load_balancer.tls.key",
            f"the private key {key} is readable by others (mode {key_fact.mode or 0:o})",
            f"chmod 600 {key}",
        )


RULES = (
    Rule(
        "lb.layer7_tls",
        "layer 7: a usable certificate for the hostname and Rancher tls=external",
        f"{sources.TUTORIAL}; {sources.RANCHER_EXTERNAL_TLS}",
        _layer7_tls,
    ),
)
