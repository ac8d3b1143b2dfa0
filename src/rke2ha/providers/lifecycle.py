"""`plan`, `up` and `down` for any provider: lock the state, describe, plan, confirm, apply.

The command module only parses flags and prints; this is where the order of things lives:
the state lock is held from the first read to the last write, a plan is always computed
from fresh facts, and nothing is changed unless the caller's `confirm` says yes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rke2ha.plan import Plan
from rke2ha.providers import provider_for
from rke2ha.providers.base import Outcome, ProviderOptions, Reporter, addressed_spec
from rke2ha.spec import Spec
from rke2ha.state import StateLock

if TYPE_CHECKING:
    from rke2ha.check.session import CheckRun


@dataclass
class Result:
    plan: Plan
    outcome: Outcome | None = None  # None: nothing applied (no changes, or declined)
    lock_notices: list[str] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)
    check: CheckRun | None = None  # the check `up` ran (--wait, or Outcome.check_after)


def _lock(spec: Spec) -> StateLock:
    return StateLock(spec.state_dir, spec.name)


def plan(spec: Spec, options: ProviderOptions) -> Result:
    provider = provider_for(spec, options)
    lock = _lock(spec)
    with lock.acquire("plan", force_unlock=options.force_unlock):
        facts = provider.describe()
        return Result(provider.plan(facts), lock_notices=lock.notices)


def up(
    spec: Spec,
    options: ProviderOptions,
    confirm: Callable[[Plan], bool],
    reporter: Reporter,
    wait_timeout: float | None = None,
    run_check: bool = True,
) -> Result:
    """Plan, confirm, apply; with `wait_timeout`, wait for healthy targets. Then, with
    `wait_timeout` or when the provider asks for it (`Outcome.check_after`), run `check`
    against the addresses the provider assigned (unless `run_check` is False)."""
    provider = provider_for(spec, options)
    lock = _lock(spec)
    addressed: Spec | None = None
    with lock.acquire("up", force_unlock=options.force_unlock):
        facts = provider.describe()
        the_plan = provider.plan(facts)
        result = Result(the_plan, lock_notices=lock.notices)
        if the_plan.has_changes and not confirm(the_plan):
            return result
        if the_plan.has_changes:
            result.outcome = provider.apply(the_plan, facts, reporter)
        if wait_timeout is not None:
            result.ready = provider.wait_ready(wait_timeout, reporter)
        check_after = result.outcome is not None and result.outcome.check_after
        if run_check and (wait_timeout is not None or check_after):
            addressed = addressed_spec(provider, spec)
    if addressed is not None:
        # Imported here: probes and their libraries load only when a check runs.
        from rke2ha.check.session import check_deployment, with_defaults
        from rke2ha.check.target import CheckOptions

        # Outside the lock: checking reads nothing of the state and may take a while.
        result.check = check_deployment(addressed, with_defaults(addressed, CheckOptions(), None))
    return result


def down(
    spec: Spec, options: ProviderOptions, confirm: Callable[[Plan], bool], reporter: Reporter
) -> Result:
    provider = provider_for(spec, replace(options, for_down=True))
    lock = _lock(spec)
    with lock.acquire("down", force_unlock=options.force_unlock):
        facts = provider.describe()
        the_plan = provider.plan_destroy(facts)
        result = Result(the_plan, lock_notices=lock.notices)
        if the_plan.has_changes and confirm(the_plan):
            result.outcome = provider.destroy(the_plan, facts, reporter)
        return result
