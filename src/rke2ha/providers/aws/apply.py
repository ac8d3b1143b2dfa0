"""Apply a plan: each change made real in plan order, bookkept in the state file.

For every create the state file first gets a `pending` entry, then the cloud call runs
(carrying our tags), then the entry becomes `created` with the resource id. A run killed
between the two leaves the pending entry; the next `describe` finds the resource by its
tags and adopts it, so nothing is made twice. Every wait is a boto3 waiter or a retry loop
with a bound; nothing waits forever. The operations per kind live in `ops_identity`,
`ops_network` and `ops_compute`; the Route 53 record goes through `dnsrecord`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rke2ha.errors import InvalidError
from rke2ha.plan import Change, Desired, Plan
from rke2ha.providers.aws.errors import aws_errors
from rke2ha.providers.aws.ops_compute import ComputeOps
from rke2ha.providers.aws.ops_identity import IdentityOps
from rke2ha.providers.aws.ops_network import NetworkOps
from rke2ha.state import ResourceEntry


@dataclass
class Applier(IdentityOps, NetworkOps, ComputeOps):
    done: list[Change] = field(default_factory=list)

    def sync_state_from_facts(self) -> None:
        """Record every resource found (adopting pending ones) before changing anything."""
        for address, observed in self.facts.observed.items():
            self.state.resources[address] = ResourceEntry(observed.kind, observed.id, "created")
        for address in list(self.state.resources):
            entry = self.state.resources[address]
            if address not in self.facts.observed and entry.status == "created":
                del self.state.resources[address]  # gone out of band
        self.store.save(self.state)

    def run(self, plan: Plan) -> list[Change]:
        self.sync_state_from_facts()
        for change in plan.changes:
            with self.reporter.step(change), aws_errors(f"{change.action} {change.address}"):
                if change.action in ("delete", "replace"):
                    self.delete(change.address, change.kind, change.id)
                if change.action in ("create", "replace"):
                    self._pending(change.address, change.kind)
                    rid = self.create(self.desired[change.address])
                    self._created(change.address, change.kind, rid)
                if change.action == "update":
                    self.update(self.desired[change.address], change.id)
            self.done.append(change)
        return self.done

    def create(self, want: Desired) -> str:
        handler = getattr(self, f"create_{want.kind}")
        return str(handler(want))

    def update(self, want: Desired, rid: str | None) -> None:
        getattr(self, f"update_{want.kind}")(want, rid)

    def delete(self, address: str, kind: str, rid: str | None) -> None:
        getattr(self, f"delete_{kind}")(address, rid)
        self._deleted(address)

    # ---- DNS ---------------------------------------------------------------------------

    def create_dns_record(self, want: Desired) -> str:
        if self.record is None or self.facts.nlb is None:
            raise InvalidError("dns_record.hostname: no Route 53 publisher or load balancer")
        self.record.publish(self.facts.nlb.dns_name, adopt=self.adopt_dns)
        return str(want.properties["name"])

    def update_dns_record(self, want: Desired, rid: str | None) -> None:
        self.create_dns_record(want)

    def delete_dns_record(self, address: str, rid: str | None) -> None:
        if self.record is not None:
            self.record.unpublish()
