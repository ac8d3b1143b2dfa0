"""What exists in AWS for this cluster, found by names, tags and the state file. Read-only.

Each resource rke2ha makes carries `rke2ha:cluster`, `rke2ha:owner` and `rke2ha:address`
tags; the address tag maps a found resource back to its plan address without the state
file, which is what lets an interrupted `up` (a `pending` state entry) be resumed: the
resource created just before the crash is found by its tags and adopted, not created twice.

Ownership rules and the fact types live in `facts_base`, the load balancer's facts in
`facts_elb`; this module reads the network, SSM, IAM, the security group and instances.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from rke2ha.errors import InvalidError
from rke2ha.providers.aws.desired import (
    ADDRESS_TAG,
    CLUSTER_TAG,
    Network,
    Subnet,
    place_nodes,
)
from rke2ha.providers.aws.errors import aws_errors, error_code
from rke2ha.providers.aws.facts_base import (
    LIVE_INSTANCE_STATES,
    TOKEN_POLICY,
    AwsFacts,
    InstanceInfo,
    tag_dict,
)
from rke2ha.providers.aws.facts_elb import LoadBalancerFacts

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import IpPermissionOutputTypeDef


class Describer(LoadBalancerFacts):
    """Reads one cluster's resources; `describe()` returns `AwsFacts`."""

    # ---- network and inputs ------------------------------------------------------------

    def network(self) -> Network:
        ec2 = self.clients.ec2
        assert self.spec.aws is not None
        vpc_id = self.spec.aws.vpc_id
        with aws_errors("reading the VPC"):
            if vpc_id is None:
                vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
                if not vpcs["Vpcs"]:
                    raise InvalidError(
                        f"region {self.clients.region} has no default VPC; set aws.vpc_id"
                    )
                vpc = vpcs["Vpcs"][0]
            else:
                try:
                    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
                except botocore.exceptions.ClientError as err:
                    if error_code(err).startswith("InvalidVpcID"):
                        raise InvalidError(
                            f"aws.vpc_id: {vpc_id} not found in {self.clients.region}"
                        ) from None
                    raise
            subnets = ec2.describe_subnets(
                Filters=[
                    {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
                    {"Name": "state", "Values": ["available"]},
                ]
            )["Subnets"]
        return Network(
            vpc_id=vpc["VpcId"],
            cidr=vpc["CidrBlock"],
            subnets=tuple(
                Subnet(s["SubnetId"], s["AvailabilityZone"], bool(s.get("DefaultForAz")))
                for s in subnets
            ),
        )

    def check_ami(self) -> None:
        assert self.spec.aws is not None
        ami = self.spec.aws.ami
        with aws_errors(f"looking up aws.ami {ami}"):
            images = self.clients.ec2.describe_images(ImageIds=[ami])["Images"]
        if not images:
            raise InvalidError(
                f"aws.ami: {ami} not found in {self.clients.region}; "
                "pick an AMI that exists in this region"
            )

    # ---- resources ---------------------------------------------------------------------

    def ssm_parameter(self) -> None:
        name = self.names.token_parameter
        ssm = self.clients.ssm
        with aws_errors("reading the token parameter"):
            found = ssm.describe_parameters(
                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
            )["Parameters"]
            if not found:
                return
            tags = tag_dict(
                ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
            )
        if self._owned(f"SSM parameter {name}", tags):
            self._add(
                "ssm_parameter.rke2_token",
                "ssm_parameter",
                name,
                {"name": name, "type": found[0].get("Type")},
            )

    def iam(self) -> None:
        iam = self.clients.iam
        with aws_errors("reading the node role"):
            try:
                role = iam.get_role(RoleName=self.names.role)["Role"]
            except iam.exceptions.NoSuchEntityException:
                role = None
            if role is not None and self._owned(
                f"IAM role {self.names.role}", tag_dict(role.get("Tags"))
            ):
                self._add("iam_role.node", "iam_role", role["RoleName"], self._role_props(role))
            try:
                profile = iam.get_instance_profile(InstanceProfileName=self.names.profile)
            except iam.exceptions.NoSuchEntityException:
                return
        info = profile["InstanceProfile"]
        if self._owned(f"IAM instance profile {self.names.profile}", tag_dict(info.get("Tags"))):
            roles = [r["RoleName"] for r in info.get("Roles", [])]
            self._add(
                "iam_instance_profile.node",
                "iam_instance_profile",
                info["InstanceProfileName"],
                {"name": info["InstanceProfileName"], "role": roles[0] if roles else None},
            )

    def _role_props(self, role: Any) -> dict[str, Any]:
        trust = role.get("AssumeRolePolicyDocument") or {}
        if isinstance(trust, str):
            trust = json.loads(trust)
        services = [s.get("Principal", {}).get("Service") for s in trust.get("Statement", []) if s]
        reads: list[str] = []
        try:
            policy = self.clients.iam.get_role_policy(
                RoleName=role["RoleName"], PolicyName=TOKEN_POLICY
            )["PolicyDocument"]
            document = json.loads(policy) if isinstance(policy, str) else policy
            for statement in document.get("Statement", []):
                resources = statement.get("Resource", [])
                for arn in [resources] if isinstance(resources, str) else resources:
                    reads.append("/" + str(arn).split(":parameter/", 1)[-1])
        except self.clients.iam.exceptions.NoSuchEntityException:
            pass
        return {
            "name": role["RoleName"],
            "trusts": services[0] if len(services) == 1 else services,
            "reads": sorted(reads),
        }

    def security_group(self, network: Network) -> None:
        with aws_errors("reading the security group"):
            groups = self.clients.ec2.describe_security_groups(
                Filters=[
                    {"Name": "group-name", "Values": [self.names.security_group]},
                    {"Name": "vpc-id", "Values": [network.vpc_id]},
                ]
            )["SecurityGroups"]
        for group in groups:
            if self._owned(f"security group {group['GroupId']}", tag_dict(group.get("Tags"))):
                self.facts.security_group_id = group["GroupId"]
                rules = rules_of(group["GroupId"], group.get("IpPermissions", []))
                self._add(
                    "security_group.nodes",
                    "security_group",
                    group["GroupId"],
                    {"name": group["GroupName"], "vpc": group["VpcId"], "ingress": rules},
                )

    def instances(self) -> None:
        with aws_errors("reading the instances"):
            pages = self.clients.ec2.get_paginator("describe_instances").paginate(
                Filters=[
                    {"Name": f"tag:{CLUSTER_TAG}", "Values": [self.spec.name]},
                    {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES},
                ]
            )
            found = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        for instance in found:
            tags = tag_dict(instance.get("Tags"))
            self._owned(f"instance {instance['InstanceId']}", tags)
            address = tags.get(ADDRESS_TAG, f"instance.?{instance['InstanceId']}")
            node = address.split(".", 1)[1]
            zone = instance.get("Placement", {}).get("AvailabilityZone", "")
            profile = instance.get("IamInstanceProfile", {}).get("Arn", "")
            self.facts.instances[node] = InstanceInfo(
                instance["InstanceId"],
                node,
                instance.get("PrivateIpAddress"),
                zone,
                instance.get("PublicIpAddress"),
            )
            self._add(
                address,
                "instance",
                instance["InstanceId"],
                {
                    "name": tags.get("Name"),
                    "ami": instance.get("ImageId"),
                    "instance_type": instance.get("InstanceType"),
                    "zone": zone,
                    "subnet": instance.get("SubnetId"),
                    "profile": profile.rsplit("/", 1)[-1] if profile else None,
                },
            )

    def check_inputs(self) -> None:
        """Spec values only AWS can judge: the AMI exists, the VPC has zones for every node.

        Called before planning (never by `down`: a retired AMI must not block cleanup).
        """
        self.check_ami()
        assert self.facts.network is not None
        place_nodes(self.spec, self.facts.network)

    def describe(self) -> AwsFacts:
        network = self.network()
        self.facts.network = network
        self.ssm_parameter()
        self.iam()
        self.security_group(network)
        self.instances()
        self.load_balancer()
        self.target_groups()
        for address in self.state.pending:
            found = address in self.facts.observed
            self.facts.resumed.append(address)
            self.facts.notes.append(
                f"an earlier run was interrupted while creating {address}: "
                + (
                    "found it by its tags, adopting it"
                    if found
                    else "not found, it will be created"
                )
            )
        return self.facts


def rules_of(group_id: str, permissions: list[IpPermissionOutputTypeDef]) -> list[str]:
    """A security group's ingress rules as the sorted strings `desired` uses."""
    rules: set[str] = set()
    for perm in permissions:
        proto = str(perm.get("IpProtocol"))
        span = f"{perm.get('FromPort')}-{perm.get('ToPort')}"
        for pair in perm.get("UserIdGroupPairs", []):
            source = "self" if pair.get("GroupId") == group_id else pair.get("GroupId")
            rules.add(f"{proto} {span} from {source}")
        for ip_range in perm.get("IpRanges", []):
            rules.add(f"{proto} {span} from {ip_range.get('CidrIp')}")
        for ip6 in perm.get("Ipv6Ranges", []):
            rules.add(f"{proto} {span} from {ip6.get('CidrIpv6')}")
    return sorted(rules)
