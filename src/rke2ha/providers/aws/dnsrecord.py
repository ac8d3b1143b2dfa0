"""The Rancher hostname in Route 53: an alias A record to the NLB plus the ownership TXT.

No Route 53 code of its own: the DNS package's publisher (`rke2ha.dns.route53`) reads and
changes the records and its pure `plan_publish`/`plan_unpublish` apply the ownership rules
(CREATE only on a free name, change or delete only under our marker, never UPSERT over a
stranger's record). This module only builds the alias record from the NLB - whose hosted
zone id is read from `DescribeLoadBalancers` by the DNS package - and maps what it finds to
the plan's terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

from rke2ha.dns.ownership import Ownership, judge, ownership_name, ownership_value
from rke2ha.dns.publish import (
    Action,
    Observed,
    Plan,
    plan_publish,
    plan_unpublish,
)
from rke2ha.dns.records import DesiredRecords, Record, absolute, check_in_zone
from rke2ha.dns.route53 import Route53Publisher, nlb_alias
from rke2ha.spec import Spec

ADDRESS = "dns_record.hostname"
# Stands in for the NLB's name while it does not exist yet (ownership is judged without it).
_NOT_YET = "nlb-not-created-yet.invalid."


@dataclass(frozen=True)
class RecordFacts:
    """The hostname's records as the plan sees them; None when the name is free."""

    properties: dict[str, Any] | None
    ownership: Ownership


class HostnameRecord:
    """Describe / publish / unpublish the hostname's alias through the DNS package."""

    def __init__(self, spec: Spec, session: boto3.Session) -> None:
        self.spec = spec
        self.session = session
        self.publisher = Route53Publisher(spec, session)

    def desired(self, nlb_dns_name: str | None) -> DesiredRecords:
        zone, hostname = check_in_zone(self.spec)
        host = hostname.to_text().lower()
        if nlb_dns_name is None:
            address = Record(host, "A", 0, (_NOT_YET,))
        else:
            alias = nlb_alias(self.session.client("elbv2"), nlb_dns_name)
            address = Record(host, "A", 0, (), alias)
        owner = Record(
            ownership_name(host),
            "TXT",
            self.spec.dns.ttl,
            (f'"{ownership_value(self.spec.name)}"',),
        )
        return DesiredRecords(zone.to_text().lower(), host, (address,), owner)

    def describe(self, nlb_dns_name: str | None, *, strict: bool) -> RecordFacts:
        """What is at the hostname. `strict`: a record we do not own is an error (NotOwnedError)."""
        desired = self.desired(None)
        observed = self.publisher.describe(desired)
        if strict:
            # Raises NotOwnedError (exit 1, naming the record) for someone else's record.
            plan_publish(desired, observed, self.spec.name, adopt=False)
        ownership = judge(bool(observed.address), observed.marker_values, self.spec.name)
        if ownership is not Ownership.OURS:
            return RecordFacts(None, ownership)
        return RecordFacts(self._properties(observed, nlb_dns_name), ownership)

    def _properties(self, observed: Observed, nlb_dns_name: str | None) -> dict[str, Any]:
        records = [r for r in observed.address if r.rdtype == "A"]
        alias_to: str | None = None
        if len(records) == 1 and records[0].alias is not None:
            target = absolute(records[0].alias.dns_name)
            nlb = absolute(nlb_dns_name) if nlb_dns_name else None
            alias_to = "load_balancer.nlb" if target == nlb else target
        elif records:
            alias_to = ", ".join(v for r in records for v in r.values)
        return {
            "name": absolute(self.spec.hostname),
            "type": "A" if records or not observed.address else observed.address[0].rdtype,
            "alias_to": alias_to,
        }

    def publish(self, nlb_dns_name: str, *, adopt: bool = False) -> Plan:
        desired = self.desired(nlb_dns_name)
        plan = plan_publish(desired, self.publisher.describe(desired), self.spec.name, adopt=adopt)
        if plan.action is not Action.NONE:
            self.publisher.apply(plan)
        return plan

    def unpublish(self) -> Plan:
        desired = self.desired(None)
        plan = plan_unpublish(desired, self.publisher.describe(desired), self.spec.name)
        if plan.action is not Action.NONE:
            self.publisher.apply(plan)
        return plan
