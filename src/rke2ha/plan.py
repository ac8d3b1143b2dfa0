"""Desired resources vs what exists -> an ordered list of changes. Pure: no I/O, no clouds.

Theory of operation (Terraform's model, reduced to what rke2ha needs):

- A provider describes what the spec asks for as `Desired` resources: an address
  (`instance.node-1`), a kind, the properties that can be compared with reality (in spec
  terms: names, ports, node addresses - never cloud ids, which are unknown before apply),
  the addresses it depends on, and which property changes force a replacement.
- The provider's facts describe what exists as `Observed` resources with the same addresses.
- `diff()` compares them: absent -> `+` create; a replace-forcing property differs ->
  `-/+` replace; another property differs -> `~` update; observed but not desired ->
  `-` delete. A resource that depends on one being created or replaced and names it in
  `rebind` is updated too (a target group attachment must re-register a new instance).
- Order: deletions of unwanted resources first (dependents before what they depend on),
  then creates/updates/replaces in dependency order. `destroy_plan()` deletes everything
  observed, dependents first.

Nothing here knows about AWS: the same types serve every provider.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["create", "update", "replace", "delete"]
SYMBOLS: dict[Action, str] = {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}


@dataclass(frozen=True)
class Desired:
    """A resource the spec asks for."""

    address: str
    kind: str
    properties: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    replace_on: frozenset[str] = frozenset()
    # Dependencies whose creation or replacement means this resource must be updated.
    rebind: tuple[str, ...] = ()


@dataclass(frozen=True)
class Observed:
    """A resource that exists (found by its tags or the state file)."""

    address: str
    kind: str
    id: str
    properties: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class PropertyDiff:
    key: str
    before: Any
    after: Any

    def describe(self) -> str:
        before, after = _short(_compact(self.before), 100), _short(_compact(self.after), 100)
        return f"{self.key}: {before} -> {after}"


@dataclass(frozen=True)
class Change:
    action: Action
    address: str
    kind: str
    id: str | None = None
    diffs: tuple[PropertyDiff, ...] = ()
    reason: str | None = None
    # What a create (or the create half of a replace) makes, for the person reviewing it.
    after: Mapping[str, Any] | None = None

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.action]

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "symbol": self.symbol,
            "address": self.address,
            "kind": self.kind,
            "id": self.id,
            "reason": self.reason,
            "diffs": [{"key": d.key, "before": d.before, "after": d.after} for d in self.diffs],
            "after": dict(self.after) if self.after is not None else None,
        }


@dataclass
class Plan:
    """Ordered changes plus notes a person should read before applying them."""

    changes: list[Change]
    notes: list[str] = field(default_factory=list)
    # For the reviewer (`rke2ha.specdiff`): the spec fields that differ from the spec the
    # running resources were made from (`spec_from` names its file), and a unified diff
    # per rendered config file that changes.
    spec_changes: list[PropertyDiff] = field(default_factory=list)
    spec_from: str | None = None
    file_diffs: dict[str, str] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def summary(self) -> str:
        if not self.changes:
            return "No changes. Infrastructure matches the spec."
        add = self.count("create") + self.count("replace")
        destroy = self.count("delete") + self.count("replace")
        return (
            f"Plan: {add} to add, {self.count('update')} to change, {destroy} to destroy"
            f" ({self.count('replace')} replaced)."
        )

    def lines(self) -> list[str]:
        """One line per change (`+ instance.node-1`), its diffs indented below it."""
        out: list[str] = []
        for change in self.changes:
            head = f"{change.symbol:>3} {change.address}"
            if change.id:
                head += f"  ({_short_id(change.id)})"
            if change.reason:
                head += f"  # {change.reason}"
            out.append(head)
            if change.action == "create" and change.after:
                for key, value in change.after.items():
                    out.extend(_property_lines(key, value))
            out.extend(f"        {d.describe()}" for d in change.diffs)
        if self.changes and self.spec_changes:
            since = f" (running from {self.spec_from})" if self.spec_from else ""
            out.append(f"  spec fields changed{since}:")
            out.extend(f"        {d.describe()}" for d in self.spec_changes)
        for path, text in sorted(self.file_diffs.items()) if self.changes else ():
            out.append(f"  config file {path}:")
            out.extend(f"    {line}" for line in text.splitlines())
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": [c.to_json() for c in self.changes],
            "notes": list(self.notes),
            "spec_changes": [
                {"key": d.key, "before": d.before, "after": d.after} for d in self.spec_changes
            ],
            "spec_from": self.spec_from,
            "file_diffs": dict(self.file_diffs),
            "summary": self.summary,
            "counts": {a: self.count(a) for a in SYMBOLS},
        }


def _short_id(rid: str) -> str:
    """An ARN's resource part (`targetgroup/name/abc…`); other ids as they are."""
    return rid.rsplit(":", 1)[-1] if rid.startswith("arn:") else rid


def _compact(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    return str(value)


def _property_lines(key: str, value: Any, indent: str = "        ") -> list[str]:
    """`key = value`; a long list goes one item per line so each can be reviewed."""
    text = _compact(value)
    if isinstance(value, list | tuple) and len(text) > 80:
        return (
            [f"{indent}{key} = ["] + [f"{indent}    {_compact(v)}" for v in value] + [f"{indent}]"]
        )
    return [f"{indent}{key} = {text}"]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PlanError(ValueError):
    """Desired resources that cannot be ordered (unknown dependency or a cycle)."""


def dependency_order(resources: Sequence[Desired]) -> list[Desired]:
    """`resources` sorted so every resource comes after its dependencies (stable)."""
    by_address = {r.address: r for r in resources}
    for resource in resources:
        for dep in resource.depends_on:
            if dep not in by_address:
                raise PlanError(f"{resource.address} depends on unknown {dep}")
    ordered: list[Desired] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(resource: Desired, path: tuple[str, ...]) -> None:
        mark = state.get(resource.address)
        if mark == 2:
            return
        if mark == 1:
            raise PlanError("dependency cycle: " + " -> ".join((*path, resource.address)))
        state[resource.address] = 1
        for dep in resource.depends_on:
            visit(by_address[dep], (*path, resource.address))
        state[resource.address] = 2
        ordered.append(resource)

    for resource in resources:
        visit(resource, ())
    return ordered


def _reverse_dependency_order(observed: Iterable[Observed], rank: Mapping[str, int]) -> list[str]:
    """Addresses of `observed`, dependents before their dependencies.

    Recorded `depends_on` decides first; `rank` (kind -> creation rank) breaks the rest,
    highest rank (created last) deleted first.
    """
    items = {o.address: o for o in observed}
    ordered: list[str] = []
    done: set[str] = set()
    dependents: dict[str, set[str]] = {a: set() for a in items}
    for item in items.values():
        for dep in item.depends_on:
            if dep in dependents:
                dependents[dep].add(item.address)

    def visit(address: str, seen: frozenset[str]) -> None:
        if address in done or address in seen:
            return
        for child in sorted(dependents[address], key=lambda a: (-rank.get(items[a].kind, 0), a)):
            visit(child, seen | {address})
        done.add(address)
        ordered.append(address)

    for address in sorted(items, key=lambda a: (-rank.get(items[a].kind, 0), a)):
        visit(address, frozenset())
    return ordered


def _property_diffs(want: Desired, have: Observed) -> list[PropertyDiff]:
    diffs: list[PropertyDiff] = []
    for key, value in sorted(want.properties.items()):
        before = have.properties.get(key)
        if before == value:
            continue
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            # A nested setting (a health check): name the sub-keys that differ.
            diffs.extend(
                PropertyDiff(f"{key}.{sub}", before.get(sub), value.get(sub))
                for sub in sorted({*value, *before})
                if before.get(sub) != value.get(sub)
            )
        else:
            diffs.append(PropertyDiff(key, before, value))
    return diffs


def diff(
    desired: Sequence[Desired],
    observed: Mapping[str, Observed],
    *,
    kind_rank: Mapping[str, int] | None = None,
    notes: Sequence[str] = (),
) -> Plan:
    """The changes that turn `observed` into `desired`, in the order to apply them."""
    rank = dict(kind_rank or {})
    changes: list[Change] = []
    unwanted = [o for a, o in observed.items() if a not in {d.address for d in desired}]
    for address in _reverse_dependency_order(unwanted, rank):
        gone = observed[address]
        changes.append(Change("delete", address, gone.kind, gone.id, reason="not in the spec"))
    renewed: set[str] = set()
    for want in dependency_order(desired):
        have = observed.get(want.address)
        if have is None:
            changes.append(Change("create", want.address, want.kind, after=want.properties))
            renewed.add(want.address)
            continue
        diffs = _property_diffs(want, have)
        forcing = [d for d in diffs if d.key in want.replace_on]
        if forcing:
            keys = ", ".join(d.key for d in forcing)
            changes.append(
                Change(
                    "replace",
                    want.address,
                    want.kind,
                    have.id,
                    tuple(diffs),
                    f"{keys} cannot change in place",
                    after=want.properties,
                )
            )
            renewed.add(want.address)
        elif diffs:
            changes.append(Change("update", want.address, want.kind, have.id, tuple(diffs)))
        else:
            rebound = [dep for dep in want.rebind if dep in renewed]
            if rebound:
                changes.append(
                    Change(
                        "update",
                        want.address,
                        want.kind,
                        have.id,
                        reason=f"follows new {', '.join(rebound)}",
                    )
                )
    return Plan(changes, list(notes))


def destroy_plan(observed: Mapping[str, Observed], *, kind_rank: Mapping[str, int]) -> Plan:
    """Delete every observed resource, dependents first."""
    order = _reverse_dependency_order(observed.values(), kind_rank)
    return Plan(
        [Change("delete", a, observed[a].kind, observed[a].id, reason="down") for a in order]
    )
