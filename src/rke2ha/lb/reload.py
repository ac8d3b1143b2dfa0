"""What a reload changes: the difference between the running and the new `LbConfig`. Pure.

`server.py` applies the plan without dropping a connection: frontends that stay keep their
listener and their established connections; their backend set is updated (new backends
join, removed ones drain until their connections end or `drain_timeout`); frontends that
disappear stop accepting and drain; new ones start listening.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from rke2ha.lb.config import BackendConfig, FrontendConfig, LbConfig


@dataclass(frozen=True)
class FrontendChange:
    old: FrontendConfig
    new: FrontendConfig
    joined: tuple[BackendConfig, ...]
    leaving: tuple[BackendConfig, ...]
    health_changed: bool
    settings_changed: bool  # balance, timeouts, limits, retries, send_proxy

    @property
    def changed(self) -> bool:
        return bool(self.joined or self.leaving or self.health_changed or self.settings_changed)


@dataclass(frozen=True)
class ReloadPlan:
    added: tuple[FrontendConfig, ...] = ()
    removed: tuple[FrontendConfig, ...] = ()
    changed: tuple[FrontendChange, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def summary(self) -> str:
        if self.empty:
            return "no change"
        parts = [f"+frontend {f.address}" for f in self.added]
        parts += [f"-frontend {f.address} (draining)" for f in self.removed]
        for change in self.changed:
            parts += [f"{change.new.name}: +backend {b.key}" for b in change.joined]
            parts += [f"{change.new.name}: -backend {b.key} (draining)" for b in change.leaving]
            if change.health_changed:
                parts.append(f"{change.new.name}: health check changed")
            if change.settings_changed:
                parts.append(f"{change.new.name}: settings changed")
        return "; ".join(parts + list(self.notes))


def plan_reload(old: LbConfig, new: LbConfig) -> ReloadPlan:
    old_fes = {f.address: f for f in old.frontends}
    new_fes = {f.address: f for f in new.frontends}
    changes = []
    # A port whose kind changes (layer 4 <-> 7) gets a new frontend: the old one drains.
    same = {a for a in old_fes.keys() & new_fes.keys() if old_fes[a].kind == new_fes[a].kind}
    for address in same:
        before, after = old_fes[address], new_fes[address]
        keys_before = {b.key for b in before.backends}
        keys_after = {b.key for b in after.backends}
        change = FrontendChange(
            old=before,
            new=after,
            joined=tuple(b for b in after.backends if b.key not in keys_before),
            leaving=tuple(b for b in before.backends if b.key not in keys_after),
            health_changed=before.health != after.health,
            settings_changed=replace(before, backends=(), health=after.health, name=after.name)
            != replace(after, backends=()),
        )
        if change.changed:
            changes.append(change)
    notes = []
    if old.admin != new.admin:
        notes.append("admin endpoint moved")
    if old.workers != new.workers:
        notes.append("worker count change needs a restart")
    if old.l7 != new.l7 and new.l7 is not None:
        notes.append("layer 7 settings and certificate re-read")
    return ReloadPlan(
        added=tuple(f for a, f in new_fes.items() if a not in same),
        removed=tuple(f for a, f in old_fes.items() if a not in same),
        changed=tuple(sorted(changes, key=lambda c: c.new.address)),
        notes=tuple(notes),
    )
