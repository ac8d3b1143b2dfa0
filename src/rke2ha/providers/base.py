"""The small protocol every provider implements: describe -> plan -> apply, and destroy.

Modelled on pyinfra (facts, operations, connectors kept apart) and Terraform providers:
- `describe()` reads what exists (facts) and never changes anything;
- `plan(facts)` is the diff between the spec and those facts (`rke2ha.plan`);
- `apply(plan, facts, reporter)` performs the changes in order, reporting each one;
- `plan_destroy(facts)` / `destroy(plan, facts, reporter)` remove what the provider made.
The command layer holds the lock and asks for confirmation; providers do neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from rke2ha.plan import Change, Observed, Plan
from rke2ha.spec import Spec


@dataclass(frozen=True)
class ProviderOptions:
    """Flags of `plan`, `up` and `down` that providers need to know about."""

    force_unlock: bool = False
    # Take over a record at the hostname that rke2ha did not make (never implied).
    adopt_dns: bool = False
    # provider existing with rke2.install: merge the kubeconfig into ~/.kube/config.
    merge_kubeconfig: bool = False
    # `down`: run rke2-uninstall.sh on the nodes where rke2ha installed RKE2.
    uninstall_rke2: bool = False
    # Set by `down`: `describe` reads only what `down` may remove. Provider existing then
    # takes RKE2's resources from the state file and logs in to no node, so a dead server
    # does not keep the load balancer and DNS record in place.
    for_down: bool = False


@dataclass
class Facts:
    """What a provider found: resources by address, plus notes for the person reading."""

    observed: dict[str, Observed]
    notes: list[str] = field(default_factory=list)
    # Pending creations left by an interrupted run (state entries), resolved by `describe`.
    resumed: list[str] = field(default_factory=list)


class Reporter(Protocol):
    """Where a provider reports progress (rich on a terminal, plain lines in logs)."""

    def step(self, change: Change) -> contextlib.AbstractContextManager[None]: ...

    def note(self, text: str) -> None: ...


class SilentReporter:
    """A reporter that reports nothing (library use, tests)."""

    @contextlib.contextmanager
    def _nothing(self) -> Iterator[None]:
        yield

    def step(self, change: Change) -> contextlib.AbstractContextManager[None]:
        return self._nothing()

    def note(self, text: str) -> None:
        return None


@dataclass(frozen=True)
class Outcome:
    """What `apply` or `destroy` did, and what the user should do next.

    `dns_instructions` are zone-file lines for a person to paste (`dns.provider: manual`),
    kept apart from the prose of `next_steps` so they are printed and read verbatim.
    """

    done: list[Change]
    next_steps: list[str] = field(default_factory=list)
    dns_instructions: list[str] = field(default_factory=list)
    # The provider brought up something `check` can verify end to end (Rancher answered
    # /ping): `up` runs the checks right away, as `rke2ha check` would.
    check_after: bool = False


class Provider(Protocol):
    """One way of making the infrastructure real (aws, lab, existing)."""

    name: str

    def describe(self) -> Facts: ...

    def plan(self, facts: Facts) -> Plan: ...

    def apply(self, plan: Plan, facts: Facts, reporter: Reporter) -> Outcome: ...

    def plan_destroy(self, facts: Facts) -> Plan: ...

    def destroy(self, plan: Plan, facts: Facts, reporter: Reporter) -> Outcome: ...

    def wait_ready(self, timeout: float, reporter: Reporter) -> list[str]:
        """Block (bounded by `timeout`) until the load balancer reports healthy targets;
        return lines describing what was seen."""
        ...


def addressed_spec(provider: Provider, spec: Spec) -> Spec:
    """The spec with the addresses the provider assigned (aws: nodes and NLB), for `check`.

    Optional part of the protocol: providers that assign no addresses do not implement
    `addressed_spec()` and the spec is used as written.
    """
    method = getattr(provider, "addressed_spec", None)
    return spec if method is None else method()
