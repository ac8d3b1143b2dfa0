"""The built-in server as the primary a real BIND secondary follows (live, loopback).

`rke2ha dns serve` listens on 127.0.231.1 (this file's loopback range) with a transfer
key and `notify` pointing at a real `named` configured as a secondary of the zone with
that key by the clauses `rke2ha render` writes (dns/named-secondary.conf). named
transfers the zone at start; after the spec changes and the server gets SIGHUP, its
NOTIFY makes named transfer again, and named's answer changes within seconds (measured
and printed). dig shows transfers
without the key refused and with it served.

named binds 127.0.0.1 (see tests/support/named.py), so it queries and transfers from
127.0.0.1 and the spec's axfr_allow names 127.0.0.0/8 beside the key.
"""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import free_port
from tests.dns.conftest import Running, dig, section
from tests.support.named import (
    NAMED_HOST,
    NAMED_OPTIONS,
    launch_named,
    named_binary,
    wait_until_answers,
)
from tests.support.procs import stop

from rke2ha.render.dnszone import render_secondary
from rke2ha.specfile import load_spec

PRIMARY_HOST = "127.0.231.1"
KEY_NAME = "xfr-key."
SECRET = base64.b64encode(b"rke2ha-transfer-key-32-bytes-ok!").decode()
ANSWER_DEADLINE = 15.0  # seconds for named to follow a change (NOTIFY, SOA, IXFR)

# Around the key and zone clauses `rke2ha render` writes to dns/named-secondary.conf (no
# allow-notify: BIND takes NOTIFY from its primaries), named logs transfers and NOTIFY.
LOGGING = (
    "logging { category xfer-in { default_stderr; }; category notify { default_stderr; }; };\n"
)


def write_spec(path: Path, lb_address: str, listen: str) -> None:
    key_file = path.parent / "xfr.secret"
    key_file.write_text(SECRET + "\n")
    key_file.chmod(0o600)
    document: dict[str, Any] = {
        "name": "prod",
        "hostname": "rancher.example.com",
        "provider": "existing",
        "nodes": [{"name": f"node-{i}", "address": f"127.0.231.{100 + i}"} for i in (1, 2, 3)],
        "load_balancer": {"address": lb_address},
        "dns": {
            "zone": "example.com",
            "ttl": 60,
            "builtin": {
                "listen": listen,
                "axfr_allow": ["127.0.0.0/8"],
                "transfer_key": {"name": KEY_NAME, "key_file": str(key_file)},
                "notify": [],  # filled in once named's port is known
            },
        },
    }
    path.write_text(yaml.safe_dump(document))


def set_in_spec(path: Path, **changes: Any) -> None:
    document = yaml.safe_load(path.read_text())
    if "lb_address" in changes:
        document["load_balancer"]["address"] = changes["lb_address"]
    if "notify" in changes:
        document["dns"]["builtin"]["notify"] = changes["notify"]
    path.write_text(yaml.safe_dump(document))


def dig_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "dig.key"
    path.write_text(f'key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n')
    path.chmod(0o600)
    return path


def a_record(host: str, port: int) -> list[str]:
    return section(dig(host, port, "rancher.example.com", "A"), "ANSWER")


def wait_for(predicate: Callable[[], bool], deadline: float) -> float | None:
    """Seconds until `predicate()` held (polling every 50 ms), None past `deadline`."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


@pytest.fixture
def secondary(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A named directory and port; named itself is started by the test (after the primary)."""
    named_binary()
    directory = tmp_path / "secondary"
    directory.mkdir()
    yield directory, free_port(NAMED_HOST)


def test_bind_secondary_follows_notify_and_transfers_need_the_key(
    tmp_path: Path,
    serve: Callable[..., Running],
    secondary: tuple[Path, int],
) -> None:
    directory, named_port = secondary
    spec = tmp_path / "rke2ha.yaml"
    primary_port = free_port(PRIMARY_HOST)
    write_spec(spec, "127.0.231.10", f"{PRIMARY_HOST}:{primary_port}")
    set_in_spec(spec, notify=[f"{NAMED_HOST}:{named_port}"])
    primary = serve(spec, host=PRIMARY_HOST, port=primary_port)
    rendered = render_secondary(load_spec(spec), "rke2ha.yaml")
    assert SECRET not in rendered
    options = NAMED_OPTIONS.format(
        dir=directory, port=named_port, host=NAMED_HOST, extra="notify no;"
    )
    conf = options + LOGGING + rendered.replace('secret "SECRET"', f'secret "{SECRET}"')
    (directory / "named.conf").write_text(conf)
    subprocess.run(["named-checkconf", str(directory / "named.conf")], check=True, timeout=20)
    named = launch_named(directory, named_port)
    log = directory / "named.log"
    try:
        wait_until_answers(NAMED_HOST, named_port, "example.com")
        # 1. The initial transfer: named answers from the zone it got from rke2ha.
        first = wait_for(
            lambda: (
                a_record(NAMED_HOST, named_port) == ["rancher.example.com. 60 IN A 127.0.231.10"]
            ),
            ANSWER_DEADLINE,
        )
        assert first is not None, f"named never served the zone:\n{log.read_text()}"
        text = log.read_text()
        assert re.search(r"transferred serial \d+: TSIG 'xfr-key'", text), text

        # 2. A change: new LB address, SIGHUP -> NOTIFY -> named transfers and answers anew.
        set_in_spec(spec, lb_address="127.0.231.11")
        primary.proc.send_signal(signal.SIGHUP)
        seconds = wait_for(
            lambda: (
                a_record(NAMED_HOST, named_port) == ["rancher.example.com. 60 IN A 127.0.231.11"]
            ),
            ANSWER_DEADLINE,
        )
        assert seconds is not None, f"named did not follow the change:\n{log.read_text()}"
        print(f"\nNOTIFY to answer: named served the new address {seconds:.2f} s after SIGHUP")
        text = log.read_text()
        assert re.search(rf"notify from {re.escape(PRIMARY_HOST)}#\d+: serial \d+", text), text
        assert len(re.findall(r"transferred serial \d+: TSIG 'xfr-key'", text)) >= 2, text
        # The SOA refresh (3600 s) cannot explain a transfer within the deadline: NOTIFY did.

        # 3. dig AXFR against the primary: refused without the key, served with it.
        unsigned = dig(primary.host, primary.port, "example.com", "AXFR")
        assert unsigned["status"] == "REFUSED" and not section(unsigned, "ANSWER")
        signed = dig(
            primary.host, primary.port, "example.com", "AXFR", "-k", str(dig_key_file(tmp_path))
        )
        records = section(signed, "ANSWER")
        assert " IN SOA " in records[0] and " IN SOA " in records[-1]
        assert "rancher.example.com. 60 IN A 127.0.231.11" in records
        # IXFR (RFC 1995): from the current serial just the SOA; from an older one the
        # whole zone in AXFR form (no journal).
        serial = int(records[0].split()[6])
        key = str(dig_key_file(tmp_path))
        current = section(
            dig(primary.host, primary.port, "example.com", f"IXFR={serial}", "-k", key), "ANSWER"
        )
        older = section(
            dig(primary.host, primary.port, "example.com", f"IXFR={serial - 1}", "-k", key),
            "ANSWER",
        )
        assert len(current) == 1 and " IN SOA " in current[0]
        assert older == records
    finally:
        stop(named, timeout=10)
    stderr = primary.stop()
    assert SECRET not in stderr and SECRET not in log.read_text()
    assert re.search(
        rf"notify {re.escape(NAMED_HOST)}:{named_port} serial \d+: acknowledged", stderr
    ), stderr
