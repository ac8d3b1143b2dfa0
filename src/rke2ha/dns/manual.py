"""`dns.provider: manual`: rke2ha cannot reach the DNS, so it says exactly what to create.

It implements the `Publisher` protocol so every provider flows through the same code, but
it can read nothing (`describe` sees an empty zone) and change nothing (`apply` only keeps
the instructions): the operator creates the records the text names.
"""

from __future__ import annotations

from rke2ha.dns.publish import Action, Observed, Plan
from rke2ha.dns.records import DesiredRecords


def instructions(desired: DesiredRecords, remove: bool = False) -> list[str]:
    """Zone-file lines to create (or delete) for the Rancher hostname, with a short why."""
    verb = "Delete" if remove else "Create"
    lines = [f"; {verb} these records in zone {desired.zone}"]
    lines += [line for record in desired.address for line in record.zone_lines()]
    lines.append("; ownership marker, so `rke2ha dns publish` with another provider knows it:")
    lines += desired.owner.zone_lines()
    if not remove:
        lines.append("; the hostname is final once Rancher is installed; check it first.")
    return lines


class ManualPublisher:
    provider = "manual"

    def __init__(self) -> None:
        self.lines: list[str] = []

    def describe(self, desired: DesiredRecords) -> Observed:
        return Observed((), None)

    def apply(self, plan: Plan) -> None:
        self.lines = instructions(plan.desired, remove=plan.action is Action.DELETE)
