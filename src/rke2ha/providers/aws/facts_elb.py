"""Facts of the load balancer: the NLB, its target groups, registered targets, listeners.

Target groups are matched by our name prefix, then by tags; each one's `rke2ha:address`
tag gives its port. Registered targets are mapped back to node names through the
instances found earlier (an unknown instance shows as `?i-...`, which plans a repair).
"""

from __future__ import annotations

from rke2ha.providers.aws.desired import ADDRESS_TAG
from rke2ha.providers.aws.errors import aws_errors
from rke2ha.providers.aws.facts_base import DescriberBase, NlbInfo, tag_dict


class LoadBalancerFacts(DescriberBase):
    def load_balancer(self) -> None:
        elb = self.clients.elbv2
        with aws_errors("reading the load balancer"):
            try:
                lbs = elb.describe_load_balancers(Names=[self.names.load_balancer])
            except elb.exceptions.LoadBalancerNotFoundException:
                return
            lb = lbs["LoadBalancers"][0]
            tags = self._elb_tags([lb["LoadBalancerArn"]])
        if not self._owned(
            f"load balancer {self.names.load_balancer}", tags[lb["LoadBalancerArn"]]
        ):
            return
        self.facts.nlb = NlbInfo(lb["LoadBalancerArn"], lb["DNSName"], lb["CanonicalHostedZoneId"])
        self._add(
            "load_balancer.nlb",
            "load_balancer",
            lb["LoadBalancerArn"],
            {
                "name": lb["LoadBalancerName"],
                "type": lb.get("Type"),
                "scheme": lb.get("Scheme"),
                "subnets": sorted(z["SubnetId"] for z in lb.get("AvailabilityZones", [])),
            },
        )

    def _elb_tags(self, arns: list[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for start in range(0, len(arns), 20):
            described = self.clients.elbv2.describe_tags(ResourceArns=arns[start : start + 20])
            for item in described["TagDescriptions"]:
                out[item["ResourceArn"]] = tag_dict(item.get("Tags"))
        return out

    def target_groups(self) -> None:
        elb = self.clients.elbv2
        prefix = f"{self.names.short}-tg"
        with aws_errors("reading the target groups"):
            groups = [
                tg
                for page in elb.get_paginator("describe_target_groups").paginate()
                for tg in page["TargetGroups"]
                if tg["TargetGroupName"].startswith(prefix)
            ]
            tags = self._elb_tags([tg["TargetGroupArn"] for tg in groups])
        names_by_arn: dict[str, str] = {}
        for tg in groups:
            arn = tg["TargetGroupArn"]
            if not self._owned(f"target group {tg['TargetGroupName']}", tags[arn]):
                continue
            address = tags[arn].get(ADDRESS_TAG, f"target_group.{tg['Port']}")
            port = int(address.rsplit(".", 1)[1])
            self.facts.target_groups[port] = arn
            names_by_arn[arn] = tg["TargetGroupName"]
            with aws_errors("reading target group attributes"):
                attributes = {
                    a["Key"]: a["Value"]
                    for a in elb.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
                }
            self._add(
                address,
                "target_group",
                arn,
                {
                    "name": tg["TargetGroupName"],
                    "protocol": tg.get("Protocol"),
                    "port": tg.get("Port"),
                    "vpc": tg.get("VpcId"),
                    "health": {
                        "protocol": tg.get("HealthCheckProtocol"),
                        "port": int(tg.get("HealthCheckPort", "0") or 0),
                        "path": tg.get("HealthCheckPath", ""),
                        "matcher": tg.get("Matcher", {}).get("HttpCode", ""),
                        "interval": tg.get("HealthCheckIntervalSeconds"),
                        "timeout": tg.get("HealthCheckTimeoutSeconds"),
                        "healthy": tg.get("HealthyThresholdCount"),
                        "unhealthy": tg.get("UnhealthyThresholdCount"),
                    },
                    "preserve_client_ip": attributes.get("preserve_client_ip.enabled") == "true",
                },
            )
            self._targets(port, arn)
        self._listeners(names_by_arn)

    def _targets(self, port: int, arn: str) -> None:
        node_by_id = {info.id: node for node, info in self.facts.instances.items()}
        with aws_errors("reading target health"):
            described = self.clients.elbv2.describe_target_health(TargetGroupArn=arn)
        registered = sorted(
            node_by_id.get(d["Target"]["Id"], f"?{d['Target']['Id']}")
            for d in described["TargetHealthDescriptions"]
            if d.get("TargetHealth", {}).get("State") not in ("draining",)
        )
        if registered:  # none registered: the attachment does not exist (plan shows `+`)
            self._add(f"targets.{port}", "targets", arn, {"targets": registered})

    def _listeners(self, names_by_arn: dict[str, str]) -> None:
        if self.facts.nlb is None:
            return
        elb = self.clients.elbv2
        with aws_errors("reading the listeners"):
            listeners = elb.describe_listeners(LoadBalancerArn=self.facts.nlb.arn)["Listeners"]
        for listener in listeners:
            port = int(listener["Port"])
            forward = [
                a.get("TargetGroupArn")
                for a in listener.get("DefaultActions", [])
                if a.get("Type") == "forward"
            ]
            self.facts.listeners[port] = listener["ListenerArn"]
            self._add(
                f"listener.{port}",
                "listener",
                listener["ListenerArn"],
                {
                    "port": port,
                    "protocol": listener.get("Protocol"),
                    "forward_to": names_by_arn.get(forward[0] or "", forward[0])
                    if forward
                    else None,
                },
            )
