"""What the tests that install the RKE2 stand-in with `rke2ha up` share: the cluster's
names, the CLI as the workstation runs it, the nodes prepared (no RKE2 before or after,
the stand-in's short ticks during) and the spec (`provider: existing`, air-gap artifacts)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from tests.rke2_standin.conftest import sh
from tests.rke2_up_live.userdns import UserDns
from tests.support.machines import Machine, Testbed

VERSION = "v1.33.2+rke2r1"
HOSTNAME = "rancher.rke2ha.test"
ZONE = "rke2ha.test"
NODES = ("node-1", "node-2", "node-3")
UP_TIMEOUT = 600.0
# Seconds between the stand-in's learner promotions on these machines (RKE2: 15 s), and
# the stand-in Rancher answers 1 s after its HelmChart (default 5 s).
LEARNER_TICK = 2
STANDIN_DEFAULTS = "/etc/default/rke2-server"  # the unit's EnvironmentFile


def cli(
    bed: Testbed, *args: str, timeout: float = UP_TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "rke2ha", *args]
    return bed.workstation.run(argv, timeout=timeout, env=env)


def clean(machine: Machine) -> None:
    """The machine without RKE2 (the stand-in's own uninstall script) or uploaded artifacts."""
    machine.sh(
        "/usr/local/bin/rke2-uninstall.sh >/dev/null 2>&1; rm -rf /tmp/rke2ha-artifacts.*; true",
        timeout=60,
    )


@contextlib.contextmanager
def standin_nodes(bed: Testbed) -> Iterator[None]:
    """The shared nodes without RKE2 before and after, the stand-in's short ticks during."""
    machines = [bed.machine(n) for n in NODES]
    for machine in machines:
        clean(machine)
        defaults = f"RKE2_STANDIN_LEARNER_TICK={LEARNER_TICK}\\nRKE2_STANDIN_RANCHER_DELAY=1"
        sh(machine, f"printf '{defaults}\\n' > {STANDIN_DEFAULTS}")
    try:
        yield
    finally:
        for machine in machines:
            clean(machine)
            machine.sh(f"rm -f {STANDIN_DEFAULTS}")


def write_spec(
    bed: Testbed, dns: UserDns, folder: Path, artifacts: Path, rancher: bool = False
) -> Path:
    doc: dict[str, Any] = bed.spec([bed.machine(n) for n in NODES], hostname=HOSTNAME)
    doc["ssh"].update({"connect_timeout": "8s", "command_timeout": "30s"})
    doc["dns"] = dns.spec(ZONE)
    doc["rke2"] = {
        "install": "airgap",
        "version": VERSION,
        "airgap": {"artifacts": str(artifacts)},
    }
    if rancher:
        doc["rancher"] = {"install": True, "replicas": 3}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
