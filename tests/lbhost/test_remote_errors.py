"""The SSH adapter's errors, on a stand-in connection that answers like a Debian host
whose apt cannot reach a mirror and whose haproxy rejects the config (no SSH here: the
real path is tests/lbhost_live)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from rke2ha.errors import InvalidError
from rke2ha.lbhost import remote
from rke2ha.lbhost.decide import ENGINES, Step
from rke2ha.ssh.connection import Result

HAPROXY = ENGINES["haproxy"]


@dataclass
class FakeTarget:
    node: str = "lb-1"
    command_timeout: float = 30.0


@dataclass
class FakeConnection:
    answers: dict[str, Result]
    target: FakeTarget = field(default_factory=FakeTarget)
    ran: list[str] = field(default_factory=list)

    async def run(self, command: str, *, timeout: float | None = None,
                  input: str | None = None) -> Result:  # fmt: skip
        self.ran.append(command)
        for prefix, result in self.answers.items():
            if command.startswith(prefix):
                return result
        return Result(0, "", "")


def run_step(conn: FakeConnection, step: Step) -> None:
    asyncio.run(remote._run(conn, HAPROXY, step))  # type: ignore[arg-type]


def test_an_unreachable_package_source_names_the_package_and_the_host() -> None:
    apt = Result(100, "Err:1 http://deb.debian.org ... haproxy\n",
                 "E: Unable to fetch some archives\n")  # fmt: skip
    conn = FakeConnection({"DEBIAN_FRONTEND": apt})
    with pytest.raises(InvalidError) as caught:
        run_step(conn, Step("install", "install package haproxy", "DEBIAN_FRONTEND=x apt-get"))
    text = str(caught.value)
    assert "lb-1" in text and "cannot install package haproxy" in text
    assert text.index("Err:1") < text.index("E: Unable to fetch")  # apt's cause comes last
    assert "fix: give lb-1 a package source" in text


def test_a_rejected_config_removes_the_staged_file_and_says_nothing_was_touched() -> None:
    check = Result(1, "", "[ALERT] parsing [cfg:2]: unknown keyword 'bogus'\n")
    conn = FakeConnection({"/usr/sbin/haproxy -c": check})
    step = Step("check", "check it", HAPROXY.check_command(HAPROXY.staged))
    with pytest.raises(InvalidError) as caught:
        run_step(conn, step)
    assert conn.ran[-1] == "rm -f /etc/haproxy/haproxy.cfg.rke2ha-new"
    text = str(caught.value)
    assert "rejects the rendered config" in text and "unknown keyword 'bogus'" in text
    assert "were not touched" in text


def test_a_failed_start_carries_the_units_journal() -> None:
    start = Result(1, "", "Job for haproxy.service failed because the control process exited\n")
    journal = Result(0, "[ALERT] Cannot raise FD limit to 20055, limit is 1024.\n", "")
    conn = FakeConnection({"systemctl start": start, "journalctl": journal})
    with pytest.raises(InvalidError, match="Cannot raise FD limit"):
        run_step(conn, Step("start", "start haproxy.service", "systemctl start haproxy.service"))
