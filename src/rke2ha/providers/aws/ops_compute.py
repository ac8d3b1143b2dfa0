"""Instance operations: launch each RKE2 server with its user data, terminate it.

A server's user data names the server before it (its private address), so servers are
launched one after another in spec order and each waits at boot for the one before.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions

from rke2ha.errors import InvalidError
from rke2ha.plan import Desired
from rke2ha.providers.aws.errors import error_code
from rke2ha.providers.aws.facts_base import InstanceInfo
from rke2ha.providers.aws.nodeconfig import node_boot
from rke2ha.providers.aws.opsbase import WAIT_INSTANCE, OpsBase, aws_tags, retry
from rke2ha.providers.aws.userdata import build_user_data


class ComputeOps(OpsBase):
    def _previous_node(self, node: str) -> InstanceInfo | None:
        names = [n.name for n in self.spec.nodes]
        index = names.index(node)
        return self.facts.instances.get(names[index - 1]) if index > 0 else None

    def _root_device(self, ami: str) -> str:
        image = self.clients.ec2.describe_images(ImageIds=[ami])["Images"][0]
        return str(image.get("RootDeviceName") or "/dev/sda1")

    def create_instance(self, want: Desired) -> str:
        assert self.spec.aws is not None and self.facts.nlb is not None
        node = want.address.split(".", 1)[1]
        previous = self._previous_node(node)
        if previous is not None and not previous.private_ip:
            raise InvalidError(f"{want.address}: the previous server has no private address yet")
        boot = node_boot(
            self.spec,
            node,
            nlb_dns_name=self.facts.nlb.dns_name,
            previous_server=previous.private_ip if previous else None,
        )
        user_data = build_user_data(boot, secrets_not_allowed=(self.token,))
        props = want.properties
        ec2 = self.clients.ec2
        instance_tags = aws_tags(self.tags_for(want.address), props["name"])
        args: dict[str, Any] = {
            "ImageId": props["ami"],
            "InstanceType": props["instance_type"],
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": props["subnet"],
            "SecurityGroupIds": [self.facts.security_group_id],
            "IamInstanceProfile": {"Name": props["profile"]},
            "UserData": user_data,
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "BlockDeviceMappings": [
                {
                    "DeviceName": self._root_device(props["ami"]),
                    "Ebs": {
                        "VolumeSize": self.spec.aws.volume_size_gb,
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                        "Encrypted": True,
                    },
                }
            ],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": instance_tags},
                {"ResourceType": "volume", "Tags": instance_tags},
            ],
        }
        if self.spec.aws.key_name:
            args["KeyName"] = self.spec.aws.key_name
        launched = retry(
            lambda: ec2.run_instances(**args),
            # A fresh instance profile is "invalid" until IAM has propagated it.
            codes={"InvalidParameterValue"},
            message="instance profile",
            what=f"launching {want.address}",
        )["Instances"][0]
        instance_id = launched["InstanceId"]
        ec2.get_waiter("instance_running").wait(
            InstanceIds=[instance_id],
            WaiterConfig=WAIT_INSTANCE,
        )
        running = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][
            0
        ]
        self.facts.instances[node] = InstanceInfo(
            instance_id,
            node,
            running.get("PrivateIpAddress"),
            running.get("Placement", {}).get("AvailabilityZone", ""),
            running.get("PublicIpAddress"),
        )
        return instance_id

    def delete_instance(self, address: str, rid: str | None) -> None:
        if rid is None:
            return
        ec2 = self.clients.ec2
        try:
            ec2.terminate_instances(InstanceIds=[rid])
        except botocore.exceptions.ClientError as err:
            if error_code(err) != "InvalidInstanceID.NotFound":
                raise
            return
        ec2.get_waiter("instance_terminated").wait(
            InstanceIds=[rid],
            WaiterConfig=WAIT_INSTANCE,
        )
        self.facts.instances.pop(address.split(".", 1)[1], None)
