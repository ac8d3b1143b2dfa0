"""Each server's first-boot inputs, from the shared RKE2 renderer (`rke2ha.render.rke2`).

The renderer's config carries the token itself (for files an operator installs by hand);
user data is readable by anyone allowed `ec2:DescribeInstanceAttribute`, so here the token
is replaced by `token-file`, which the boot script fills from SSM. `tls-san` gains the
NLB's DNS name because the spec copy handed to the renderer carries it as the load
balancer address.
"""

from __future__ import annotations

import yaml

from rke2ha.errors import InvalidError
from rke2ha.providers.aws.desired import Names, readyz_matcher
from rke2ha.providers.aws.userdata import TOKEN_FILE, ServerBoot
from rke2ha.render.common import DEFAULT_LAYOUT
from rke2ha.render.rke2 import render_authentication_config, server_config
from rke2ha.spec import Spec


def node_boot(
    spec: Spec, node: str, *, nlb_dns_name: str, previous_server: str | None
) -> ServerBoot:
    """The `ServerBoot` of `node`: config without the token, auth config, join order."""
    if spec.aws is None:
        raise InvalidError("provider is aws but the spec has no aws: block")
    names = [n.name for n in spec.nodes]
    if node not in names:
        raise InvalidError(f"no node named {node!r} in the spec")
    index = names.index(node)
    with_lb = spec.model_copy(deep=True)
    with_lb.load_balancer.address = nlb_dns_name
    config = server_config(with_lb, index, token="")
    del config["token"]
    config = {"token-file": TOKEN_FILE, **config}
    text = (
        f"# rke2ha {spec.name}: RKE2 server {node} ({index + 1} of {len(names)}); "
        "the token is read from SSM at boot\n"
        + yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=1000)
    )
    extra: tuple[tuple[str, str], ...] = ()
    if spec.rke2.anonymous_health:
        extra = (
            (
                DEFAULT_LAYOUT.rke2_authentication_config(),
                render_authentication_config(f"spec {spec.name}"),
            ),
        )
    statuses = tuple(int(s) for s in readyz_matcher(spec).split(","))
    return ServerBoot(
        cluster=spec.name,
        node=node,
        rke2_version=spec.aws.rke2_version,
        region=spec.aws.region,
        token_parameter=Names(spec.name).token_parameter,
        config_yaml=text,
        registration_url=spec.registration_url if index > 0 else None,
        previous_server=previous_server,
        readyz_statuses=statuses,
        extra_files=extra,
    )
