"""Publishing the record into someone's DNS: describe what is there, plan, apply.

All three publishers (rfc2136, route53, manual) implement `Publisher`, the protocol the
AWS provider reuses: `describe()` reads the facts (the hostname's A/AAAA/CNAME RRsets and
the ownership TXT), the pure `plan_publish`/`plan_unpublish` decide from those facts and
the ownership rules, and `apply(plan)` makes the change atomically with the conditions the
plan's action implies (each publisher says how it enforces them).

Ownership rules (see `ownership.py`):
- free name            -> CREATE, on condition the name still does not exist;
- our marker           -> UPDATE (or nothing when equal), on condition our marker is there;
- someone else's record -> refused and reported, untouched; `--adopt` takes it over
  (ADOPT, on condition the records are still exactly what we saw);
- unpublish            -> DELETE our two records only, on condition our marker is there;
  a record that is not ours is left alone and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from rke2ha.dns.ownership import Ownership, judge
from rke2ha.dns.records import DesiredRecords, Record
from rke2ha.errors import InvalidError


@dataclass(frozen=True)
class Observed:
    """What the zone holds now: the hostname's address RRsets and the ownership TXT."""

    address: tuple[Record, ...]
    owner: Record | None

    @property
    def all(self) -> tuple[Record, ...]:
        return self.address + ((self.owner,) if self.owner is not None else ())

    @property
    def marker_values(self) -> tuple[str, ...]:
        return self.owner.values if self.owner is not None else ()

    def as_dict(self) -> dict[str, object]:
        return {
            "address": [r.as_dict() for r in self.address],
            "owner": self.owner.as_dict() if self.owner is not None else None,
        }


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    ADOPT = "adopt"
    DELETE = "delete"
    NONE = "none"  # already as desired, or nothing to remove


@dataclass(frozen=True)
class Plan:
    action: Action
    desired: DesiredRecords
    observed: Observed
    ownership: Ownership
    reason: str


class NotOwnedError(InvalidError):
    """The hostname holds records rke2ha did not create: left untouched (exit 1)."""

    def __init__(self, message: str, observed: Observed, ownership: Ownership) -> None:
        super().__init__(message)
        self.observed = observed
        self.ownership = ownership


class Publisher(Protocol):
    """One DNS provider: read the facts, then apply a plan atomically with its conditions."""

    provider: str

    def describe(self, desired: DesiredRecords) -> Observed: ...

    def apply(self, plan: Plan) -> None: ...


def _same(a: tuple[Record, ...], b: tuple[Record, ...]) -> bool:
    return {r.normalized() for r in a} == {r.normalized() for r in b}


def _show(records: tuple[Record, ...]) -> str:
    lines = [line for r in records for line in r.zone_lines()]
    return "; ".join(lines) if lines else "(nothing)"


def plan_publish(desired: DesiredRecords, observed: Observed, cluster: str, adopt: bool) -> Plan:
    """What publishing `desired` does to `observed`; NotOwnedError when it must not."""
    ownership = judge(bool(observed.address), observed.marker_values, cluster)
    if ownership is Ownership.FREE:
        return Plan(Action.CREATE, desired, observed, ownership, "the name is free")
    if ownership is Ownership.OURS:
        if _same(observed.all, desired.all):
            return Plan(Action.NONE, desired, observed, ownership, "already published")
        return Plan(Action.UPDATE, desired, observed, ownership, "ours, and it differs")
    if adopt:
        return Plan(Action.ADOPT, desired, observed, ownership, f"adopting a {ownership} record")
    whose = (
        "another cluster's ownership TXT"
        if ownership is Ownership.OTHER_CLUSTER
        else "no ownership TXT"
    )
    raise NotOwnedError(
        f"{desired.hostname} already has {_show(observed.all)} which rke2ha did not create "
        f"for cluster {cluster!r} ({whose}); left untouched. "
        "If it is yours to replace, run again with --adopt",
        observed,
        ownership,
    )


def plan_unpublish(desired: DesiredRecords, observed: Observed, cluster: str) -> Plan:
    """What unpublishing does: delete our records only; NotOwnedError for anyone else's."""
    ownership = judge(bool(observed.address), observed.marker_values, cluster)
    if ownership is Ownership.FREE:
        return Plan(Action.NONE, desired, observed, ownership, "nothing published")
    if ownership is Ownership.OURS:
        return Plan(Action.DELETE, desired, observed, ownership, "ours")
    raise NotOwnedError(
        f"{desired.hostname} has {_show(observed.address)} which rke2ha did not create for "
        f"cluster {cluster!r}; left untouched (unpublish removes only records it owns)",
        observed,
        ownership,
    )


@dataclass(frozen=True)
class Outcome:
    provider: str
    plan: Plan
    applied: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "hostname": self.plan.desired.hostname,
            "action": str(self.plan.action),
            "changed": self.applied,
            "ownership": str(self.plan.ownership),
            "reason": self.plan.reason,
            "desired": [r.as_dict() for r in self.plan.desired.all],
            "observed": self.plan.observed.as_dict(),
        }


def publish(publisher: Publisher, desired: DesiredRecords, cluster: str, adopt: bool) -> Outcome:
    plan = plan_publish(desired, publisher.describe(desired), cluster, adopt)
    if plan.action is not Action.NONE:
        publisher.apply(plan)
    return Outcome(publisher.provider, plan, plan.action is not Action.NONE)


def unpublish(publisher: Publisher, desired: DesiredRecords, cluster: str) -> Outcome:
    plan = plan_unpublish(desired, publisher.describe(desired), cluster)
    if plan.action is not Action.NONE:
        publisher.apply(plan)
    return Outcome(publisher.provider, plan, plan.action is not Action.NONE)
