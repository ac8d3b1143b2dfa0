"""What the AWS facts are made of, and the ownership rule every describe step applies.

A resource that has one of our deterministic names but not our owner tag belongs to
someone else: describing stops with an error naming it, so `up` never changes or deletes
what it did not make.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rke2ha.errors import InvalidError
from rke2ha.plan import Observed
from rke2ha.providers.aws.desired import CLUSTER_TAG, OWNER_TAG, Names, Network
from rke2ha.providers.aws.session import AwsClients
from rke2ha.providers.base import Facts
from rke2ha.spec import Spec
from rke2ha.state import State

TOKEN_POLICY = "rke2ha-read-token"
LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]


@dataclass(frozen=True)
class NlbInfo:
    arn: str
    dns_name: str
    zone_id: str  # the NLB's canonical hosted zone id, for the Route 53 alias


@dataclass(frozen=True)
class InstanceInfo:
    id: str
    node: str
    private_ip: str | None
    zone: str
    public_ip: str | None = None


@dataclass
class AwsFacts(Facts):
    network: Network | None = None
    owner: str = ""
    nlb: NlbInfo | None = None
    instances: dict[str, InstanceInfo] = field(default_factory=dict)  # by node name
    security_group_id: str | None = None
    target_groups: dict[int, str] = field(default_factory=dict)  # port -> arn
    listeners: dict[int, str] = field(default_factory=dict)  # port -> arn


def tag_dict(tags: Any) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in tags or []}


class DescriberBase:
    """Shared by the describe steps: the spec, clients, state and the facts being built."""

    def __init__(self, spec: Spec, clients: AwsClients, state: State) -> None:
        self.spec = spec
        self.clients = clients
        self.state = state
        self.names = Names(spec.name)
        self.facts = AwsFacts(observed={}, owner=state.owner)

    # ---- ownership ---------------------------------------------------------------------

    def _owned(self, what: str, tags: dict[str, str]) -> bool:
        """True when `tags` say the resource is ours; error when it is someone else's."""
        if tags.get(CLUSTER_TAG) == self.spec.name and tags.get(OWNER_TAG) == self.state.owner:
            return True
        if tags.get(CLUSTER_TAG) == self.spec.name:
            raise InvalidError(
                f"{what} is tagged {CLUSTER_TAG}={self.spec.name} but with owner "
                f"{tags.get(OWNER_TAG)!r}, not this state's {self.state.owner!r}; another copy "
                f"of cluster {self.spec.name!r} made it (or the state file "
                f"{self.spec.state_dir}/{self.spec.name}.state.json was lost: restore it)"
            )
        raise InvalidError(
            f"{what} already exists and was not made by rke2ha for cluster {self.spec.name!r}; "
            "rke2ha never changes what it did not make: remove it or choose another name"
        )

    def _add(self, address: str, kind: str, rid: str, props: dict[str, Any]) -> None:
        self.facts.observed[address] = Observed(address, kind, rid, props)
