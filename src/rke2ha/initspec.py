"""A first spec for `rke2ha init`: commented YAML for one provider, checked before it is shown.

Pure: the provider, hostname and nodes go in, the text of the file comes out. Each key's
comment is the first sentence of its description in the models (`rke2ha.specfields`), so
the comments say what the spec reference says. Values a user must replace (documentation
addresses, an AMI id) are marked `REPLACE`. `starter_spec` runs the same validation as
`rke2ha validate` on the text and refuses (UsageError, naming the flag) rather than
return a spec that validate rejects.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rke2ha.addresses import check_address
from rke2ha.errors import UsageError
from rke2ha.rules import evaluate
from rke2ha.rules.names import hostname_problem
from rke2ha.spec import Node, ProviderName
from rke2ha.specfields import spec_fields
from rke2ha.specfile import SpecSchemaError, spec_from_source
from rke2ha.yamlsource import YamlSource

DEFAULT_HOSTNAMES: dict[str, str] = {
    "lab": "rancher.lab.rke2ha.test",
    "existing": "rancher.example.com",
    "aws": "rancher.example.com",
}
WIDTH = 92
# RFC 5737 documentation addresses: placeholders that can never reach a real machine.
_PLACEHOLDER_NODES = ("192.0.2.11", "192.0.2.12", "192.0.2.13")
_PLACEHOLDER_LB = "192.0.2.10"
_AWS_REGION = "us-east-1"


@dataclass(frozen=True)
class InitNode:
    name: str
    address: str | None = None


def parse_node(text: str) -> InitNode:
    """`node-1=10.0.1.11` (or `node-1` where the provider assigns addresses); one-line errors."""
    name, sep, address = text.partition("=")
    where = f"--node {text!r}"
    if not name:
        raise UsageError(f"{where}: no node name; write NAME=ADDRESS, e.g. node-1=10.0.1.11")
    try:
        Node(name=name)
    except ValidationError:
        raise UsageError(
            f"{where}: node name {name!r} must start with a letter or digit and hold only "
            "letters, digits, '.', '_' and '-' (at most 63); e.g. node-1=10.0.1.11"
        ) from None
    if not sep:
        return InitNode(name)
    try:
        check_address(address)  # the same check as the spec's nodes[].address
    except ValueError as err:
        raise UsageError(f"{where}: {err}; e.g. {name}=10.0.1.11") from None
    return InitNode(name, address)


def _check_nodes(provider: ProviderName, nodes: list[InitNode]) -> None:
    names = [node.name for node in nodes]
    for name in names:
        if names.count(name) > 1:
            raise UsageError(f"--node: {name} is given twice; give each node once")
    for node in nodes:
        if provider == "aws" and node.address is not None:
            raise UsageError(
                f"--node {node.name}={node.address}: provider aws assigns node addresses; "
                f"give the name only (--node {node.name})"
            )
        if provider == "existing" and node.address is None:
            raise UsageError(
                f"--node {node.name}: provider existing needs each server's address; "
                f"write --node {node.name}=ADDRESS"
            )


def _comment(path: str, indent: int) -> list[str]:
    """The first sentence of the field's description, as comment lines."""
    text = spec_fields()[path].description
    sentence = re.split(r"(?<=[.)])\s+(?=[A-Z`])", text, maxsplit=1)[0]
    prefix = " " * indent + "# "
    return textwrap.wrap(sentence, WIDTH, initial_indent=prefix, subsequent_indent=prefix)


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000)
    return text.strip().removesuffix("...").strip()


class _Writer:
    """YAML lines, each key with its description's first sentence above it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str, indent: int = 0) -> None:
        prefix = " " * indent + "# "
        self.lines += textwrap.wrap(text, WIDTH, initial_indent=prefix, subsequent_indent=prefix)

    def key(self, path: str, value: Any = None, *, indent: int = 0, replace: str = "") -> None:
        """`name: value` under its comment; `replace` marks a placeholder on the same line."""
        self.lines += _comment(path, indent)
        name = path.rsplit(".", 1)[-1]
        shown = "" if value is None else f" {_flow(value)}"
        marker = f"  # REPLACE: {replace}" if replace else ""
        self.lines.append(f"{' ' * indent}{name}:{shown}{marker}")

    def block(self, path: str) -> None:
        self.lines.append("")
        self.key(path)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _nodes(provider: ProviderName, nodes: list[InitNode]) -> list[dict[str, str]]:
    if provider == "aws":
        zones = "abc"
        return [
            {"name": node.name, "zone": f"{_AWS_REGION}{zones[i % len(zones)]}"}
            for i, node in enumerate(nodes)
        ]
    return [
        {"name": node.name, **({"address": node.address} if node.address else {})} for node in nodes
    ]


def _default_nodes(provider: ProviderName) -> list[InitNode]:
    if provider == "existing":
        return [InitNode(f"node-{i + 1}", _PLACEHOLDER_NODES[i]) for i in range(3)]
    return [InitNode(f"node-{i + 1}") for i in range(3)]


def render_starter(provider: ProviderName, hostname: str, nodes: list[InitNode]) -> str:
    """The commented spec text (not yet validated; see `starter_spec`)."""
    placeholders = provider == "existing" and all(
        node.address in _PLACEHOLDER_NODES for node in nodes
    )
    zone = hostname.split(".", 1)[1]
    out = _Writer()
    out.note(
        f"rke2ha spec for provider {provider}, written by `rke2ha init`. Every field, its "
        "default and which providers use it: docs/spec-reference.md in the rke2ha sources."
    )
    out.lines.append("")
    out.key("name", "lab" if provider == "lab" else "rancher")
    out.key("hostname", hostname)
    out.key("provider", provider)
    if provider == "aws":
        out.key("region", _AWS_REGION)
    out.key("ingress", "nginx")
    out.lines.append("")
    out.key("nodes")
    if placeholders:
        out.note(
            "REPLACE these documentation addresses (192.0.2.x) with your servers' "
            "(or run `rke2ha init --node NAME=ADDRESS ...`).",
            2,
        )
    out.lines += [f"  - {_flow(node)}" for node in _nodes(provider, nodes)]
    out.block("load_balancer")
    out.key("load_balancer.layer", 4, indent=2)
    engine = {"lab": "builtin", "existing": "haproxy", "aws": "aws-nlb"}[provider]
    out.key("load_balancer.engine", engine, indent=2)
    if provider == "existing":
        out.key("load_balancer.address", _PLACEHOLDER_LB, indent=2, replace="your LB's address")
    out.key("load_balancer.ports", [80, 443, 6443, 9345], indent=2)
    out.key("load_balancer.health", indent=2)
    timing = {"lab": ("500ms", "500ms"), "existing": ("2s", "1s"), "aws": ("10s", "6s")}
    interval, timeout = timing[provider]
    out.key("load_balancer.health.interval", interval, indent=4)
    out.key("load_balancer.health.timeout", timeout, indent=4)
    out.key("load_balancer.health.rise", 2, indent=4)
    out.key("load_balancer.health.fall", 2, indent=4)
    out.block("rke2")
    out.key("rke2.anonymous_health", True, indent=2)
    out.block("dns")
    dns_provider = {"lab": "builtin", "existing": "manual", "aws": "route53"}[provider]
    out.key("dns.provider", dns_provider, indent=2)
    out.key("dns.zone", zone, indent=2)
    out.key("dns.record", "A", indent=2)
    out.key("dns.ttl", 5 if provider == "lab" else 60, indent=2)
    if provider == "aws":
        out.key("dns.route53", {}, indent=2)
        out.block("aws")
        out.key("aws.region", _AWS_REGION, indent=2)
        out.key("aws.instance_type", "m5.xlarge", indent=2)
        out.key("aws.ami", "ami-0123456789abcdef0", indent=2, replace="an AMI of the region")
        out.key("aws.allowed_cidrs", ["203.0.113.0/24"], indent=2, replace="your users' networks")
        out.key("aws.rke2_version", "v1.33.6+rke2r1", indent=2)
    if provider == "lab":
        out.block("lab")
        out.key("lab.subnet", "127.0.10.0/24", indent=2)
        out.key("lab.port_offset", 10_000, indent=2)
    return out.text()


def _refuse_invalid(text: str, spec_dir: Path) -> None:
    """Raise UsageError naming the first error `rke2ha validate` would report for `text`."""
    source = YamlSource(data=yaml.safe_load(text), filename="(init)")
    try:
        spec = spec_from_source(source, spec_dir)
    except SpecSchemaError as err:
        problem = err.problems[0]
        raise UsageError(f"{problem.path}: {problem.message}") from None
    errors = [f for f in evaluate(spec) if f.severity == "error"]
    if errors:
        first = errors[0]
        flag = "--node" if first.path.startswith("nodes") else "--hostname"
        raise UsageError(f"{flag}: {first.path}: {first.message}; fix: {first.fix}")


def starter_spec(
    provider: ProviderName, hostname: str | None, nodes: list[InitNode], spec_dir: Path
) -> str:
    """The commented spec for `rke2ha init`, which `rke2ha validate` accepts in `spec_dir`."""
    hostname = hostname or DEFAULT_HOSTNAMES[provider]
    problem = hostname_problem(hostname)
    if problem is not None:
        message, fix = problem
        raise UsageError(f"--hostname {hostname!r} {message}; {fix}")
    nodes = nodes or _default_nodes(provider)
    _check_nodes(provider, nodes)
    text = render_starter(provider, hostname, nodes)
    _refuse_invalid(text, spec_dir)
    return text
