"""SSM and IAM operations: the token parameter, the node role and its instance profile.

The role may call `ssm:GetParameter` on the one token parameter and nothing else.
"""

from __future__ import annotations

import contextlib
import json

from rke2ha.plan import Desired
from rke2ha.providers.aws.facts_base import TOKEN_POLICY
from rke2ha.providers.aws.opsbase import WAIT_PROFILE, OpsBase, aws_tags


class IdentityOps(OpsBase):
    def create_ssm_parameter(self, want: Desired) -> str:
        name = want.properties["name"]
        self.clients.ssm.put_parameter(
            Name=name,
            Description=f"RKE2 token of rke2ha cluster {self.spec.name}",
            Value=self.token,
            Type="SecureString",
            Tags=aws_tags(self.tags_for(want.address)),
        )
        return str(name)

    def delete_ssm_parameter(self, address: str, rid: str | None) -> None:
        with contextlib.suppress(self.clients.ssm.exceptions.ParameterNotFound):
            self.clients.ssm.delete_parameter(Name=rid or self.names.token_parameter)

    # ---- IAM ---------------------------------------------------------------------------

    def _token_policy(self, role_arn: str) -> str:
        partition, account = role_arn.split(":")[1], role_arn.split(":")[4]
        region = self.clients.region
        arns = [
            f"arn:{partition}:ssm:{region}:{account}:parameter{name}"
            for name in self.desired["iam_role.node"].properties["reads"]
        ]
        # Only GetParameter on the one token parameter. The default aws/ssm KMS key lets
        # callers allowed by SSM decrypt, so no kms:Decrypt statement is needed.
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": arns}],
            }
        )

    def create_iam_role(self, want: Desired) -> str:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": want.properties["trusts"]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        iam = self.clients.iam
        role = iam.create_role(
            RoleName=want.properties["name"],
            AssumeRolePolicyDocument=json.dumps(trust),
            Description=f"rke2ha {self.spec.name}: RKE2 servers read their token",
            Tags=aws_tags(self.tags_for(want.address)),
        )["Role"]
        iam.put_role_policy(
            RoleName=role["RoleName"],
            PolicyName=TOKEN_POLICY,
            PolicyDocument=self._token_policy(role["Arn"]),
        )
        return role["RoleName"]

    def update_iam_role(self, want: Desired, rid: str | None) -> None:
        role = self.clients.iam.get_role(RoleName=want.properties["name"])["Role"]
        self.clients.iam.put_role_policy(
            RoleName=role["RoleName"],
            PolicyName=TOKEN_POLICY,
            PolicyDocument=self._token_policy(role["Arn"]),
        )

    def delete_iam_role(self, address: str, rid: str | None) -> None:
        iam = self.clients.iam
        name = rid or self.names.role
        try:
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
            iam.delete_role(RoleName=name)
        except iam.exceptions.NoSuchEntityException:
            pass

    def create_iam_instance_profile(self, want: Desired) -> str:
        iam = self.clients.iam
        name = want.properties["name"]
        iam.create_instance_profile(
            InstanceProfileName=name,
            Tags=aws_tags(self.tags_for(want.address)),
        )
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=want.properties["role"])
        iam.get_waiter("instance_profile_exists").wait(
            InstanceProfileName=name,
            WaiterConfig=WAIT_PROFILE,
        )
        return str(name)

    def update_iam_instance_profile(self, want: Desired, rid: str | None) -> None:
        iam = self.clients.iam
        name = want.properties["name"]
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        for role in profile.get("Roles", []):
            iam.remove_role_from_instance_profile(
                InstanceProfileName=name, RoleName=role["RoleName"]
            )
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=want.properties["role"])

    def delete_iam_instance_profile(self, address: str, rid: str | None) -> None:
        iam = self.clients.iam
        name = rid or self.names.profile
        try:
            profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
            for role in profile.get("Roles", []):
                iam.remove_role_from_instance_profile(
                    InstanceProfileName=name, RoleName=role["RoleName"]
                )
            iam.delete_instance_profile(InstanceProfileName=name)
        except iam.exceptions.NoSuchEntityException:
            pass
