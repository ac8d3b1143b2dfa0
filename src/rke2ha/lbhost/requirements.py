"""What a spec with `load_balancer.hosts` must also say, for `validate` and for `up`. Pure.

This first slice runs HAProxy at layer 4 on one host; each missing piece is named with
the field at fault, so a spec that asks for more is refused before anything is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from rke2ha.errors import InvalidError
from rke2ha.spec import Spec

SUPPORTED_ENGINES = ("haproxy",)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    fix: str


def problems(spec: Spec) -> list[Problem]:
    lb = spec.load_balancer
    if not lb.hosts:
        return []
    found: list[Problem] = []
    if spec.provider != "existing":
        found.append(
            Problem(
                "load_balancer.hosts",
                f"load_balancer.hosts is used by provider existing only, not {spec.provider}",
                "remove load_balancer.hosts, or use provider: existing",
            )
        )
    if lb.engine not in SUPPORTED_ENGINES:
        found.append(
            Problem(
                "load_balancer.engine",
                f"engine {lb.engine} on load_balancer.hosts is not yet supported (haproxy is)",
                "use engine: haproxy with load_balancer.hosts, or remove hosts to run "
                f"{lb.engine} on this machine",
            )
        )
    if spec.ssh is None:
        found.append(
            Problem(
                "ssh",
                "load_balancer.hosts are reached over SSH, but the spec has no ssh: block",
                "add an ssh: block (user, identity_file, known_hosts)",
            )
        )
    if lb.layer != 4:
        found.append(
            Problem(
                "load_balancer.layer",
                "layer 7 on load_balancer.hosts is not yet supported (the certificate would "
                "have to be uploaded too)",
                "use layer: 4 with load_balancer.hosts",
            )
        )
    if lb.health.token_file is not None:
        found.append(
            Problem(
                "load_balancer.health.token_file",
                "a health token on load_balancer.hosts is not yet supported (it would have "
                "to be installed as a systemd environment file there)",
                "remove health.token_file, or run the engine on this machine",
            )
        )
    host = lb.hosts[0]
    if lb.address != host.address:
        found.append(
            Problem(
                "load_balancer.address",
                f"with one load balancer host, clients must reach it: load_balancer.address "
                f"{lb.address} is not load_balancer.hosts[0].address {host.address}",
                f"set load_balancer.address: {host.address}",
            )
        )
    return found


def require(spec: Spec) -> None:
    """InvalidError naming every problem (before `plan`/`up` reach a host)."""
    found = problems(spec)
    if found:
        lines = "\n".join(f"  {p.path}: {p.message}; fix: {p.fix}" for p in found)
        raise InvalidError(f"load_balancer.hosts cannot be set up as the spec says:\n{lines}")
