"""A real BIND `named` primary on loopback with a TSIG key allowed to update its zone.

named listens only on addresses its interface scan finds, and lo carries 127.0.0.1/8 as
one address: so named binds 127.0.0.1 (on an ephemeral port), not an area's own range."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import pytest
from tests.conftest import free_port
from tests.support.procs import stop

NAMED_HOST = "127.0.0.1"
KEY_NAME = "rke2ha-key."

# Options every test named shares: its own directory, one loopback address, no recursion,
# no control channel. {extra} adds statements of the caller's role.
NAMED_OPTIONS = """\
options {{
    directory "{dir}";
    listen-on port {port} {{ {host}; }};
    listen-on-v6 {{ none; }};
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    recursion no;
    dnssec-validation no;
    {extra}
}};
controls {{ }};
"""

# A primary for {zone} that takes updates signed with {key}; transfers to nobody.
NAMED_CONF = (
    NAMED_OPTIONS.replace("{extra}", "allow-transfer {{ none; }};")
    + """\
key "{key}" {{ algorithm hmac-sha256; secret "{secret}"; }};
zone "{zone}" {{
    type primary;
    file "{dir}/zone.db";
    update-policy {{ grant {key} zonesub ANY; }};
}};
"""
)

# Names are relative to the zone's origin: ns1.<zone>, hostmaster.<zone>.
ZONE_FILE = """\
$TTL 60
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A {host}
"""


@dataclass
class Named:
    host: str
    port: int
    directory: Path
    key_file: Path
    proc: subprocess.Popen[bytes]


def wait_until_answers(host: str, port: int, name: str, deadline: float = 10.0) -> None:
    """Return once host:port answers a UDP SOA query for `name`; re-raise after `deadline`."""
    end = time.monotonic() + deadline
    while True:
        try:
            dns.query.udp(dns.message.make_query(name, "SOA"), host, port=port, timeout=0.3)
            return
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def named_binary() -> str:
    """The path of `named`; skips the test when BIND is not installed."""
    binary = shutil.which("named") or "/usr/sbin/named"
    if not Path(binary).exists():
        pytest.skip("BIND named is not installed (apt-get install bind9)")
    return binary


def launch_named(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """named in the foreground with directory/named.conf, logging to directory/named.log."""
    with (directory / "named.log").open("wb") as log:
        return subprocess.Popen(
            [named_binary(), "-g", "-c", str(directory / "named.conf"), "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


@contextmanager
def running_named(tmp_path: Path, zone: str, secret: str) -> Iterator[Named]:
    """named for `zone` under tmp_path/named, TSIG secret in tmp_path/tsig.secret (0600).

    Skips the test when BIND is not installed; stops named on exit."""
    named_binary()
    directory = tmp_path / "named"
    directory.mkdir()
    port = free_port(NAMED_HOST)
    conf = NAMED_CONF.format(
        dir=directory, port=port, host=NAMED_HOST, secret=secret, zone=zone, key=KEY_NAME
    )
    (directory / "named.conf").write_text(conf)
    (directory / "zone.db").write_text(ZONE_FILE.format(host=NAMED_HOST))
    key_file = tmp_path / "tsig.secret"
    key_file.write_text(secret + "\n")
    key_file.chmod(0o600)
    proc = launch_named(directory, port)
    try:
        wait_until_answers(NAMED_HOST, port, zone)
        yield Named(NAMED_HOST, port, directory, key_file, proc)
    finally:
        stop(proc, timeout=10)
