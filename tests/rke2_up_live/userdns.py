"""The DNS a user's network has, on the test bed: a real BIND `named`, authoritative for the
hostname's zone, on the workstation's address (port 53, inside the workstation namespace),
updated by `up` through `dns.provider: rfc2136` (TSIG). The workstation and the machines
resolve through it, so nothing answers the hostname until `up` has published it.

The workstation namespace reads /etc/netns/<namespace>/resolv.conf: `ip netns exec` bind
mounts the files of /etc/netns/<name>/ over /etc/ (ip-netns(8)). The machines' own
/etc/resolv.conf is pointed at the workstation and put back afterwards."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.machines import Machine, Testbed
from tests.support.machines.rootfs import RESOLV_CONF
from tests.support.named import KEY_NAME, NAMED_CONF, ZONE_FILE
from tests.support.procs import stop

TSIG_SECRET = base64.b64encode(b"rke2ha-up-live-tsig-secret-32by!").decode()
DNS_PORT = 53
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class UserDns:
    host: str
    port: int
    key_file: Path

    def spec(self, zone: str) -> dict[str, object]:
        """The spec's `dns` block: rfc2136 against this server."""
        return {
            "provider": "rfc2136",
            "zone": zone,
            "rfc2136": {
                "server": self.host,
                "port": self.port,
                "key_name": KEY_NAME,
                "key_file": str(self.key_file),
            },
        }


def _wait_answers(bed: Testbed, host: str, zone: str) -> None:
    """From inside the workstation namespace (the only place the address is reachable)."""
    code = (
        "from tests.support.named import wait_until_answers; "
        f"wait_until_answers({host!r}, {DNS_PORT}, {zone!r})"
    )
    done = bed.workstation.run([sys.executable, "-c", code], cwd=REPO, timeout=30)
    assert done.returncode == 0, done.stderr


@contextmanager
def user_dns(
    bed: Testbed, folder: Path, zone: str, machines: Sequence[Machine]
) -> Iterator[UserDns]:
    binary = shutil.which("named") or "/usr/sbin/named"
    if not Path(binary).exists():
        pytest.skip("BIND named is not installed (apt-get install bind9)")
    host = bed.workstation.address
    directory = folder / "named"
    directory.mkdir()
    conf = NAMED_CONF.format(
        dir=directory, port=DNS_PORT, host=host, secret=TSIG_SECRET, zone=zone, key=KEY_NAME
    )
    (directory / "named.conf").write_text(conf)
    (directory / "zone.db").write_text(ZONE_FILE.format(host=host))
    key_file = folder / "tsig.secret"
    key_file.write_text(TSIG_SECRET + "\n")
    key_file.chmod(0o600)
    netns_etc = Path("/etc/netns") / bed.workstation.netns
    with (directory / "named.log").open("wb") as log:
        proc = bed.workstation.popen(
            [binary, "-g", "-c", str(directory / "named.conf"), "-p", str(DNS_PORT)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        _wait_answers(bed, host, zone)
        netns_etc.mkdir(parents=True, exist_ok=True)
        (netns_etc / "resolv.conf").write_text(f"nameserver {host}\n")
        for machine in machines:
            machine.sh(f"echo 'nameserver {host}' > /etc/resolv.conf", check=True)
        yield UserDns(host, DNS_PORT, key_file)
    finally:
        for machine in machines:
            machine.sh("cat > /etc/resolv.conf", input=RESOLV_CONF)
        shutil.rmtree(netns_etc, ignore_errors=True)
        stop(proc, timeout=10)
