"""Network operations: the security group, the NLB, its target groups, targets, listeners.

Deletes tolerate "already gone" and retry (bounded) while dependents are going away: a
target group in use by a listener, a security group still attached to a terminating
instance.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from rke2ha.errors import InvalidError
from rke2ha.plan import Desired
from rke2ha.providers.aws.errors import error_code
from rke2ha.providers.aws.facts_base import NlbInfo
from rke2ha.providers.aws.opsbase import WAIT_LB, OpsBase, aws_tags, retry

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import IpPermissionTypeDef


def parse_rule(rule: str, group_id: str) -> IpPermissionTypeDef:
    """`tcp 80-80 from 0.0.0.0/0` -> an EC2 IpPermission."""
    proto, span, _from, source = rule.split()
    low, high = (int(p) for p in span.split("-"))
    perm: IpPermissionTypeDef = {"IpProtocol": proto, "FromPort": low, "ToPort": high}
    if source == "self":
        perm["UserIdGroupPairs"] = [{"GroupId": group_id}]
    elif ":" in source:
        perm["Ipv6Ranges"] = [{"CidrIpv6": source}]
    else:
        perm["IpRanges"] = [{"CidrIp": source}]
    return perm


class NetworkOps(OpsBase):
    # ---- security group ----------------------------------------------------------------

    def create_security_group(self, want: Desired) -> str:
        ec2 = self.clients.ec2
        group_id = ec2.create_security_group(
            GroupName=want.properties["name"],
            Description=f"rke2ha {self.spec.name}: RKE2 servers",
            VpcId=want.properties["vpc"],
            TagSpecifications=[
                {
                    "ResourceType": "security-group",
                    "Tags": aws_tags(self.tags_for(want.address), want.properties["name"]),
                }
            ],
        )["GroupId"]
        self.facts.security_group_id = group_id
        rules = [parse_rule(r, group_id) for r in want.properties["ingress"]]
        if rules:
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=rules)
        return group_id

    def update_security_group(self, want: Desired, rid: str | None) -> None:
        assert rid is not None
        have = set(self.facts.observed[want.address].properties.get("ingress", []))
        wanted = set(want.properties["ingress"])
        ec2 = self.clients.ec2
        if extra := sorted(have - wanted):
            ec2.revoke_security_group_ingress(
                GroupId=rid, IpPermissions=[parse_rule(r, rid) for r in extra]
            )
        if missing := sorted(wanted - have):
            ec2.authorize_security_group_ingress(
                GroupId=rid, IpPermissions=[parse_rule(r, rid) for r in missing]
            )

    def delete_security_group(self, address: str, rid: str | None) -> None:
        if rid is None:
            return
        ec2 = self.clients.ec2
        try:
            retry(
                lambda: ec2.delete_security_group(GroupId=rid),
                codes={"DependencyViolation"},
                what=f"deleting security group {rid}",
            )
        except botocore.exceptions.ClientError as err:
            if error_code(err) != "InvalidGroup.NotFound":
                raise

    # ---- load balancer -----------------------------------------------------------------

    def create_load_balancer(self, want: Desired) -> str:
        elb = self.clients.elbv2
        lb = elb.create_load_balancer(
            Name=want.properties["name"],
            Subnets=list(want.properties["subnets"]),
            Scheme=want.properties["scheme"],
            Type="network",
            IpAddressType="ipv4",
            Tags=aws_tags(self.tags_for(want.address)),
        )["LoadBalancers"][0]
        arn = lb["LoadBalancerArn"]
        elb.get_waiter("load_balancer_available").wait(
            LoadBalancerArns=[arn],
            WaiterConfig=WAIT_LB,
        )
        self.facts.nlb = NlbInfo(arn, lb["DNSName"], lb["CanonicalHostedZoneId"])
        self.facts.listeners.clear()
        return arn

    def delete_load_balancer(self, address: str, rid: str | None) -> None:
        if rid is None:
            return
        elb = self.clients.elbv2
        try:
            elb.delete_load_balancer(LoadBalancerArn=rid)
        except elb.exceptions.LoadBalancerNotFoundException:
            return
        elb.get_waiter("load_balancers_deleted").wait(
            LoadBalancerArns=[rid],
            WaiterConfig=WAIT_LB,
        )
        self.facts.nlb = None
        self.facts.listeners.clear()

    # ---- target groups, targets, listeners ---------------------------------------------

    def _health_args(self, health: dict[str, Any]) -> dict[str, Any]:
        args: dict[str, Any] = {
            "HealthCheckProtocol": health["protocol"],
            "HealthCheckPort": str(health["port"]),
            "HealthCheckIntervalSeconds": health["interval"],
            "HealthCheckTimeoutSeconds": health["timeout"],
            "HealthyThresholdCount": health["healthy"],
            "UnhealthyThresholdCount": health["unhealthy"],
        }
        if health["protocol"] in ("HTTP", "HTTPS"):
            args["HealthCheckPath"] = health["path"]
            args["Matcher"] = {"HttpCode": health["matcher"]}
        return args

    def _client_ip(self, arn: str, preserve: bool) -> None:
        self.clients.elbv2.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[
                {"Key": "preserve_client_ip.enabled", "Value": "true" if preserve else "false"}
            ],
        )

    def create_target_group(self, want: Desired) -> str:
        props = want.properties
        arn = self.clients.elbv2.create_target_group(
            Name=props["name"],
            Protocol="TCP",
            Port=props["port"],
            VpcId=props["vpc"],
            TargetType="instance",
            Tags=aws_tags(self.tags_for(want.address)),
            **self._health_args(props["health"]),
        )["TargetGroups"][0]["TargetGroupArn"]
        self._client_ip(arn, props["preserve_client_ip"])
        self.facts.target_groups[props["port"]] = arn
        return arn

    def update_target_group(self, want: Desired, rid: str | None) -> None:
        assert rid is not None
        self.clients.elbv2.modify_target_group(
            TargetGroupArn=rid, **self._health_args(want.properties["health"])
        )
        self._client_ip(rid, want.properties["preserve_client_ip"])

    def delete_target_group(self, address: str, rid: str | None) -> None:
        if rid is None:
            return
        elb = self.clients.elbv2
        port = int(address.rsplit(".", 1)[1])
        # A listener still forwarding here blocks the delete: remove it first.
        listener = self.facts.listeners.pop(port, None)
        if listener is not None:
            self.delete_listener(f"listener.{port}", listener)
        with contextlib.suppress(elb.exceptions.TargetGroupNotFoundException):
            retry(
                lambda: elb.delete_target_group(TargetGroupArn=rid),
                codes={"ResourceInUse"},
                what=f"deleting target group {rid}",
            )
        self.facts.target_groups.pop(port, None)

    def _port(self, address: str) -> int:
        return int(address.rsplit(".", 1)[1])

    def _sync_targets(self, want: Desired) -> str:
        port = self._port(want.address)
        arn = self.facts.target_groups[port]
        elb = self.clients.elbv2
        wanted = {self.facts.instances[n].id for n in want.properties["targets"]}
        registered = {
            d["Target"]["Id"]
            for d in elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
            if d.get("TargetHealth", {}).get("State") != "draining"
        }
        if extra := sorted(registered - wanted):
            elb.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": i} for i in extra])
        if missing := sorted(wanted - registered):
            elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": i} for i in missing])
        return arn

    def create_targets(self, want: Desired) -> str:
        return self._sync_targets(want)

    def update_targets(self, want: Desired, rid: str | None) -> None:
        self._sync_targets(want)

    def delete_targets(self, address: str, rid: str | None) -> None:
        arn = self.facts.target_groups.get(self._port(address)) or rid
        if arn is None:
            return
        elb = self.clients.elbv2
        try:
            described = elb.describe_target_health(TargetGroupArn=arn)
            targets: Any = [
                {"Id": d["Target"]["Id"]} for d in described["TargetHealthDescriptions"]
            ]
            if targets:
                elb.deregister_targets(TargetGroupArn=arn, Targets=targets)
        except elb.exceptions.TargetGroupNotFoundException:
            pass

    def create_listener(self, want: Desired) -> str:
        if self.facts.nlb is None:
            raise InvalidError(f"{want.address}: the load balancer does not exist")
        port = want.properties["port"]
        arn = self.clients.elbv2.create_listener(
            LoadBalancerArn=self.facts.nlb.arn,
            Protocol="TCP",
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": self.facts.target_groups[port]}],
            Tags=aws_tags(self.tags_for(want.address)),
        )["Listeners"][0]["ListenerArn"]
        self.facts.listeners[port] = arn
        return arn

    def update_listener(self, want: Desired, rid: str | None) -> None:
        port = want.properties["port"]
        current = self.facts.listeners.get(port)
        if current is None:  # removed together with its old target group: make it again
            self._pending(want.address, want.kind)
            self._created(want.address, want.kind, self.create_listener(want))
            return
        self.clients.elbv2.modify_listener(
            ListenerArn=current,
            Protocol="TCP",
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": self.facts.target_groups[port]}],
        )

    def delete_listener(self, address: str, rid: str | None) -> None:
        if rid is None:
            return
        elb = self.clients.elbv2
        with contextlib.suppress(elb.exceptions.ListenerNotFoundException):
            elb.delete_listener(ListenerArn=rid)
        self.facts.listeners.pop(self._port(address), None)
