"""Flags of `up`/`down` that only one provider reads: refused (exit 2) for the others.

A flag a provider ignores would let `up --detach` on provider existing start applying to
real hosts while the operator expects a background lab; saying so before anything runs is
the only safe answer. Pure: the parsed flags and the spec in, a UsageError out.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rke2ha.errors import UsageError

if TYPE_CHECKING:
    from rke2ha.spec import Spec


@dataclass(frozen=True)
class ProviderFlag:
    flag: str  # as typed, e.g. "--detach"
    dest: str  # its attribute on the parsed arguments
    providers: tuple[str, ...]  # the providers that read it


UP_FLAGS = (
    ProviderFlag("--detach", "detach", ("lab",)),
    ProviderFlag("--port-offset", "port_offset", ("lab",)),
    ProviderFlag("--replace", "replace", ("lab",)),
    ProviderFlag("--adopt-dns", "adopt_dns", ("aws",)),
    ProviderFlag("--merge-kubeconfig", "merge_kubeconfig", ("existing",)),
)
DOWN_FLAGS = (
    ProviderFlag("--replace", "replace", ("lab",)),
    ProviderFlag("--uninstall-rke2", "uninstall_rke2", ("existing",)),
)


def _given(args: argparse.Namespace, dest: str) -> bool:
    value = getattr(args, dest, None)
    return value is not None and value is not False


def refuse_foreign_flags(
    args: argparse.Namespace, spec: Spec, flags: tuple[ProviderFlag, ...]
) -> None:
    """UsageError naming the first given flag this spec's provider does not read."""
    for entry in flags:
        if _given(args, entry.dest) and spec.provider not in entry.providers:
            readers = " or ".join(entry.providers)
            raise UsageError(
                f"{entry.flag} is for provider {readers}; this spec has provider "
                f"{spec.provider}; leave {entry.flag} out"
            )
    if _given(args, "merge_kubeconfig") and spec.rke2.install == "none":
        raise UsageError(
            "--merge-kubeconfig needs rke2.install online or airgap: with rke2.install none "
            "rke2ha installs no cluster and fetches no kubeconfig; leave --merge-kubeconfig out"
        )
