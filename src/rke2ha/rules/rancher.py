"""Rules about the Rancher installation beside the infrastructure (Helm values)."""

from __future__ import annotations

from collections.abc import Iterator

from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, error, warning
from rke2ha.spec import Spec
from rke2ha.specfields import spec_fields


def _replicas(spec: Spec, facts: Facts) -> Iterator[Issue]:
    if spec.provider not in spec_fields()["rancher.replicas"].providers:
        return  # nothing installs Rancher (the lab): the replica count changes nothing
    replicas, nodes = spec.rancher.replicas, len(spec.nodes)
    if nodes and replicas > nodes:
        yield warning(
            "rancher.replicas",
            f"{replicas} Rancher replicas on {nodes} nodes: some nodes run two, and losing "
            "one of those loses two replicas at once",
            f"set rancher.replicas to {nodes} (one per server node)",
        )
    elif replicas == 1 and nodes > 1:
        yield warning(
            "rancher.replicas",
            "one Rancher replica: when its node fails, Rancher is down until it is "
            "rescheduled, whatever the load balancer does",
            f"set rancher.replicas to {min(nodes, 3)}",
        )


def _letsencrypt(spec: Spec, facts: Facts) -> Iterator[Issue]:
    if spec.rancher.tls_source == "letsEncrypt" and not spec.rancher.letsencrypt_email:
        yield error(
            "rancher.letsencrypt_email",
            "tls_source letsEncrypt needs an email for the ACME account; the Helm install "
            "fails without letsEncrypt.email",
            "set rancher.letsencrypt_email to an address that receives expiry notices",
        )


RULES = (
    Rule("rancher.replicas", "one Rancher replica per node", sources.TUTORIAL, _replicas),
    Rule(
        "rancher.letsencrypt",
        "letsEncrypt comes with an email",
        sources.RANCHER_LETSENCRYPT,
        _letsencrypt,
    ),
)
