"""The Rancher hostname's record for provider existing, through `dns.provider`'s publisher.

No DNS code of its own: `rke2ha.dns.providers.publisher_for` picks the publisher
(rfc2136, route53, manual) and `rke2ha.dns.publish` applies the ownership rules (create
only on a free name, change or delete only under our marker). This module maps what the
publisher sees to the plan's terms.

`manual` can read nothing, so what it "published" is what the state file says the
operator was told to create; that is stated in the plan's notes, never passed off as a
look at the zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rke2ha.dns.ownership import Ownership, judge
from rke2ha.dns.providers import publisher_for
from rke2ha.dns.publish import (
    NotOwnedError,
    Outcome,
    Publisher,
    plan_publish,
    publish,
    unpublish,
)
from rke2ha.dns.publish import Observed as DnsObserved
from rke2ha.dns.records import DesiredRecords, Record, absolute
from rke2ha.invocation import spec_command
from rke2ha.spec import Spec

ADDRESS = "dns_record.hostname"
KIND = "dns_record"


def properties(records: tuple[Record, ...]) -> dict[str, Any]:
    """The comparable shape of the hostname's address records."""
    normalized = sorted((r.normalized() for r in records), key=lambda r: r.rdtype)
    return {
        "name": normalized[0].name if normalized else None,
        "records": [f"{r.rdtype} {' '.join(r.values)}" for r in normalized],
        "ttl": normalized[0].ttl if normalized else None,
    }


@dataclass
class RecordFacts:
    """What the publisher sees at the hostname (None when nothing of ours is there)."""

    properties: dict[str, Any] | None
    ownership: Ownership
    observed: DnsObserved


class HostnameRecord:
    """Describe / publish / unpublish the hostname through the spec's DNS publisher."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        publisher, desired = publisher_for(spec)
        self.publisher: Publisher = publisher
        self.desired: DesiredRecords = desired

    @property
    def provider(self) -> str:
        return self.publisher.provider

    @property
    def readable(self) -> bool:
        """False for `manual`: rke2ha cannot look at that zone."""
        return self.provider != "manual"

    def desired_properties(self) -> dict[str, Any]:
        return properties(self.desired.address)

    def describe(self) -> RecordFacts:
        observed = self.publisher.describe(self.desired)
        ownership = judge(bool(observed.address), observed.marker_values, self.spec.name)
        props = properties(observed.address) if ownership is Ownership.OURS else None
        return RecordFacts(props, ownership, observed)

    def refuse_foreign(self, facts: RecordFacts) -> None:
        """NotOwnedError (exit 1, naming the record) when someone else holds the hostname."""
        try:
            plan_publish(self.desired, facts.observed, self.spec.name, adopt=False)
        except NotOwnedError as err:
            # `up` has no --adopt of its own: taking a record over is a separate, deliberate act.
            message = str(err).replace(
                "run again with --adopt",
                f"take it over with `{spec_command(self.spec, 'dns', 'publish', '--adopt')}`, "
                "then run `up` again",
            )
            raise NotOwnedError(message, err.observed, err.ownership) from None

    def publish(self) -> Outcome:
        return publish(self.publisher, self.desired, self.spec.name, adopt=False)

    def unpublish(self) -> Outcome:
        return unpublish(self.publisher, self.desired, self.spec.name)

    def manual_lines(self) -> list[str]:
        lines: list[str] = getattr(self.publisher, "lines", [])
        return list(lines)


def record_name(spec: Spec) -> str:
    return absolute(spec.hostname)
