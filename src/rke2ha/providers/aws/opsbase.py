"""What every AWS operation shares: the apply context, tags, bounded waits and retries,
and the state bookkeeping around each create (pending first, created after).

Fault injection (tests only): `RKE2HA_FAULT_CRASH_AFTER_CREATE=<address>` ends the process
with `os._exit(70)` right after the cloud call that creates `<address>` returned, before
the state records it - the worst moment for a crash.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import botocore.exceptions

from rke2ha.errors import InvalidError
from rke2ha.plan import Desired
from rke2ha.providers.aws.desired import Names, tags
from rke2ha.providers.aws.dnsrecord import HostnameRecord
from rke2ha.providers.aws.errors import error_code
from rke2ha.providers.aws.facts_base import AwsFacts
from rke2ha.providers.aws.session import AwsClients
from rke2ha.providers.base import Reporter
from rke2ha.spec import Spec
from rke2ha.state import ResourceEntry, State, StateStore

FAULT_ENV = "RKE2HA_FAULT_CRASH_AFTER_CREATE"
T = TypeVar("T")

# Waiter bounds: (delay seconds, attempts). Real AWS takes minutes; moto answers at once.
WAIT_INSTANCE: Any = {"Delay": 5, "MaxAttempts": 120}
WAIT_LB: Any = {"Delay": 10, "MaxAttempts": 60}
WAIT_PROFILE: Any = {"Delay": 2, "MaxAttempts": 30}
RETRY_ATTEMPTS = 20
RETRY_DELAY = 3.0


def aws_tags(values: dict[str, str], name: str | None = None) -> Any:
    """`[{"Key": k, "Value": v}]`, the one tag shape every service takes (typed per service
    in the stubs, hence Any)."""
    items = dict(values)
    if name is not None:
        items["Name"] = name
    return [{"Key": k, "Value": v} for k, v in items.items()]


def retry(call: Callable[[], T], *, codes: set[str], what: str, message: str = "") -> T:
    """Run `call`, retrying (bounded) while AWS answers with one of `codes` (and, when
    given, an error message containing `message`).

    IAM is eventually consistent (a fresh instance profile is "invalid" for a few
    seconds) and ELB/EC2 refuse deletes while dependents are still going away.
    """
    for attempt in range(RETRY_ATTEMPTS):
        try:
            return call()
        except botocore.exceptions.ClientError as err:
            text = str(err.response.get("Error", {}).get("Message", ""))
            transient = error_code(err) in codes and message.lower() in text.lower()
            if not transient or attempt == RETRY_ATTEMPTS - 1:
                raise
            time.sleep(RETRY_DELAY)
    raise InvalidError(f"gave up {what}")  # pragma: no cover - loop always returns or raises


@dataclass
class OpsBase:
    """The context every operation works in; the operation mixins add methods only."""

    spec: Spec
    clients: AwsClients
    facts: AwsFacts
    state: State
    store: StateStore
    desired: dict[str, Desired]
    token: str
    record: HostnameRecord | None
    reporter: Reporter
    adopt_dns: bool

    @property
    def names(self) -> Names:
        return Names(self.spec.name)

    def tags_for(self, address: str) -> dict[str, str]:
        return tags(self.spec, self.state.owner, address)

    def _pending(self, address: str, kind: str) -> None:
        self.state.resources[address] = ResourceEntry(kind, None, "pending")
        self.store.save(self.state)

    def _created(self, address: str, kind: str, rid: str) -> None:
        if os.environ.get(FAULT_ENV) == address:
            os._exit(70)
        self.state.resources[address] = ResourceEntry(kind, rid, "created")
        self.store.save(self.state)

    def _deleted(self, address: str) -> None:
        self.state.resources.pop(address, None)
        self.store.save(self.state)
