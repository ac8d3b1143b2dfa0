"""`AwsProvider`: the provider protocol for `provider: aws`, tying facts, plan and apply.

describe -> `facts.Describer` (+ the hostname's Route 53 records through the DNS package);
plan -> `rke2ha.plan.diff` of `desired.desired_resources` against those facts;
apply / destroy -> `apply.Applier`, which keeps the state file current as it goes.
"""

from __future__ import annotations

import time

from rke2ha.dns.ownership import Ownership
from rke2ha.errors import InvalidError
from rke2ha.invocation import spec_command
from rke2ha.plan import Desired, Observed, Plan, destroy_plan, diff
from rke2ha.providers.aws.apply import Applier
from rke2ha.providers.aws.desired import KIND_RANK, desired_resources, health_notes
from rke2ha.providers.aws.dnsrecord import ADDRESS as DNS_ADDRESS
from rke2ha.providers.aws.dnsrecord import HostnameRecord
from rke2ha.providers.aws.errors import aws_errors
from rke2ha.providers.aws.facts import Describer
from rke2ha.providers.aws.facts_base import AwsFacts
from rke2ha.providers.aws.session import AwsClients, connect
from rke2ha.providers.base import Facts, Outcome, ProviderOptions, Reporter
from rke2ha.secretfiles import ensure_secret
from rke2ha.spec import Spec
from rke2ha.specdiff import field_changes, spec_fields, spec_record
from rke2ha.state import State, StateStore

TARGET_POLL_SECONDS = 10.0


class AwsProvider:
    name = "aws"

    def __init__(self, spec: Spec, options: ProviderOptions) -> None:
        if spec.aws is None:
            raise InvalidError(
                "provider is aws but the spec has no aws: block; add aws.region, aws.ami "
                "and aws.rke2_version"
            )
        self.spec = spec
        self.options = options
        self.store = StateStore(spec.state_dir, spec.name)
        self._clients: AwsClients | None = None
        self._state: State | None = None
        self._record: HostnameRecord | None = None
        self._dns_ownership: Ownership = Ownership.FREE
        self._describer: Describer | None = None

    @property
    def clients(self) -> AwsClients:
        if self._clients is None:
            assert self.spec.aws is not None
            self._clients = connect(self.spec.aws.region)
        return self._clients

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = self.store.load_or_new(self.name)
        return self._state

    @property
    def record(self) -> HostnameRecord | None:
        if self.spec.dns.provider != "route53":
            return None
        if self._record is None:
            self._record = HostnameRecord(self.spec, self.clients.session)
        return self._record

    # ---- the protocol ------------------------------------------------------------------

    def describe(self) -> AwsFacts:
        describer = Describer(self.spec, self.clients, self.state)
        facts = describer.describe()
        self._describer = describer
        if self.record is not None:
            nlb = facts.nlb.dns_name if facts.nlb else None
            with aws_errors("reading the Route 53 records"):
                found = self.record.describe(nlb, strict=False)
            self._dns_ownership = found.ownership
            if found.properties is not None:
                facts.observed[DNS_ADDRESS] = Observed(
                    DNS_ADDRESS, "dns_record", str(found.properties["name"]), found.properties
                )
        else:
            facts.notes.append(
                f"dns.provider is {self.spec.dns.provider}: rke2ha does not publish the record "
                "here; point the hostname at the NLB's DNS name with `rke2ha dns publish`"
            )
        return facts

    def desired(self, facts: AwsFacts) -> list[Desired]:
        assert facts.network is not None
        resources = desired_resources(self.spec, facts.network)
        if self.record is None:
            resources = [r for r in resources if r.address != DNS_ADDRESS]
        return resources

    def plan(self, facts: Facts) -> Plan:
        assert isinstance(facts, AwsFacts)
        if self._describer is not None:
            self._describer.check_inputs()  # AMI, zones: stop before anything is created
        notes = [*facts.notes, *health_notes(self.spec)]
        if self.record is not None and self._dns_ownership not in (Ownership.FREE, Ownership.OURS):
            if not self.options.adopt_dns:
                # Someone else's record at the hostname: stop before anything is created.
                raise self._not_ours()
            notes.append(
                f"{self.spec.hostname} holds a record rke2ha did not make "
                f"({self._dns_ownership}); --adopt-dns replaces it with the NLB alias"
            )
        the_plan = diff(self.desired(facts), facts.observed, kind_rank=KIND_RANK, notes=notes)
        recorded = self.state.spec
        if the_plan.has_changes and recorded is not None:
            # What the property diffs stand for in the spec the resources were made from.
            the_plan.spec_changes = field_changes(
                recorded.get("fields") or {}, spec_fields(self.spec)
            )
            the_plan.spec_from = recorded.get("file")
        return the_plan

    def _not_ours(self) -> InvalidError:
        assert self.record is not None
        with aws_errors("reading the Route 53 records"):
            desired = self.record.desired(None)
            observed = self.record.publisher.describe(desired)
        shown = "; ".join(
            line
            for r in (*observed.address, *([observed.owner] if observed.owner else []))
            for line in r.zone_lines()
        )
        whose = (
            "another rke2ha cluster owns it"
            if self._dns_ownership is Ownership.OTHER_CLUSTER
            else "no rke2ha ownership TXT"
        )
        return InvalidError(
            f"{self.spec.hostname} already has {shown} ({whose}); it is left untouched and "
            "nothing was created. Remove it, or take it over on purpose with "
            "`rke2ha up --adopt-dns`"
        )

    def _applier(self, facts: AwsFacts, reporter: Reporter, token: str) -> Applier:
        desired = {d.address: d for d in self.desired(facts)} if facts.network else {}
        return Applier(
            spec=self.spec,
            clients=self.clients,
            facts=facts,
            state=self.state,
            store=self.store,
            desired=desired,
            token=token,
            record=self.record,
            reporter=reporter,
            adopt_dns=self.options.adopt_dns,
        )

    def apply(self, plan: Plan, facts: Facts, reporter: Reporter) -> Outcome:
        assert isinstance(facts, AwsFacts)
        token = ensure_secret(self.spec.rke2_token_file, what="RKE2 token")
        done = self._applier(facts, reporter, token).run(plan)
        if self.state.resources:
            self.state.spec = spec_record(self.spec, self.spec.source_file)
            self.store.save(self.state)
        nlb = facts.nlb.dns_name if facts.nlb else "(none)"
        steps = [
            f"The NLB answers at {nlb}; {self.spec.hostname} points at it"
            + (" (Route 53 alias)." if self.record is not None else " once you publish it."),
            "Each server now installs RKE2 "
            f"{self.spec.aws.rke2_version if self.spec.aws else ''} at first boot; the first "
            "starts the cluster, the others join one at a time (10-20 minutes in all).",
            f"Verify once they are up: {spec_command(self.spec, 'check')}   "
            f"(or {spec_command(self.spec, 'up', '--wait')})",
        ]
        return Outcome(done, steps)

    def plan_destroy(self, facts: Facts) -> Plan:
        return destroy_plan(facts.observed, kind_rank=KIND_RANK)

    def destroy(self, plan: Plan, facts: Facts, reporter: Reporter) -> Outcome:
        assert isinstance(facts, AwsFacts)
        if not plan.changes:
            return Outcome([], ["Nothing of this cluster exists."])
        done = self._applier(facts, reporter, token="").run(plan)
        if not self.state.resources:
            self.store.delete()
        return Outcome(done, [f"Removed everything tagged rke2ha:cluster={self.spec.name}."])

    def addressed_spec(self) -> Spec:
        """The spec with the NLB's DNS name and each server's address filled in.

        Servers get their public address when they have one (internet-facing), else the
        private one: `check` probes each node directly from where rke2ha runs.
        """
        facts = Describer(self.spec, self.clients, self.state).describe()
        spec = self.spec.model_copy(deep=True)
        if facts.nlb is not None:
            spec.load_balancer.address = facts.nlb.dns_name
        for node in spec.nodes:
            info = facts.instances.get(node.name)
            if info is not None:
                node.address = info.public_ip or info.private_ip
                node.zone = info.zone
        return spec

    def wait_ready(self, timeout: float, reporter: Reporter) -> list[str]:
        """Poll the target groups (bounded) until every target reports healthy."""
        facts = Describer(self.spec, self.clients, self.state).describe()
        deadline = time.monotonic() + timeout
        elb = self.clients.elbv2
        while True:
            lines: list[str] = []
            unhealthy = 0
            with aws_errors("reading target health"):
                for port, arn in sorted(facts.target_groups.items()):
                    described = elb.describe_target_health(TargetGroupArn=arn)
                    states = [
                        d.get("TargetHealth", {}).get("State", "?")
                        for d in described["TargetHealthDescriptions"]
                    ]
                    healthy = states.count("healthy")
                    unhealthy += len(states) - healthy
                    lines.append(f"port {port}: {healthy}/{len(states)} targets healthy")
            if unhealthy == 0 and lines:
                return lines
            if time.monotonic() >= deadline:
                raise InvalidError(
                    f"targets not healthy after {timeout:g}s: "
                    + "; ".join(lines)
                    + "; the servers may still be installing RKE2 - run rke2ha check later"
                )
            reporter.note("; ".join(lines))
            time.sleep(min(TARGET_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
