"""Fixes that name a command name the real spec file, not `-f FILE` (issue 15, item 3).

Each spec here is loaded from a file, as the CLI does, so `Spec.source_file` is known;
every hint must then print `-f <that file>` and run as printed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2ha.check import checks, verdicts_client
from rke2ha.check.target import CheckOptions, CheckTarget, NodeTarget, build_target
from rke2ha.dns import resolve_check
from rke2ha.dns.resolve_check import Answer
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec

SPEC_NAME = "hint-spec.yaml"


def _write(tmp_path: Path, document: dict[str, Any]) -> Spec:
    (tmp_path / SPEC_NAME).write_text(yaml.safe_dump(document))
    return load_spec(SPEC_NAME)


def _lab(tmp_path: Path) -> Spec:
    return _write(
        tmp_path,
        {
            "name": "hints",
            "hostname": "rancher.hints.test",
            "provider": "lab",
            "nodes": [{"name": f"node-{i}"} for i in (1, 2, 3)],
            "dns": {"provider": "builtin", "zone": "hints.test"},
            "lab": {"subnet": "127.0.193.0/24"},
        },
    )


def _existing_builtin(tmp_path: Path, dns: dict[str, Any]) -> Spec:
    return _write(
        tmp_path,
        {
            "name": "hints",
            "hostname": "rancher.hints.test",
            "provider": "existing",
            "nodes": [
                {"name": f"node-{i}", "address": f"10.0.0.{i}", "ssh": {"user": "root"}}
                for i in (1, 2, 3)
            ],
            "load_balancer": {"engine": "builtin", "address": "10.0.0.10"},
            "dns": dns,
        },
    )


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _names_spec(text: str | None) -> None:
    assert text is not None
    assert f"-f {SPEC_NAME}" in text, text
    assert "FILE" not in text and "<spec>" not in text, text


# This file's own loopback subnet, where nothing listens: connections are refused at once.
IDLE = "127.0.193.10"


def _refused_lb(target: CheckTarget) -> CheckTarget:
    # The "load balancer is down" case, on real sockets.
    return dataclasses.replace(target, lb_address=IDLE)


def test_skip_hints_name_the_spec_file(here: Path) -> None:
    target = build_target(_lab(here), CheckOptions())
    unassigned = asyncio.run(checks.node_port(target, NodeTarget("node-1", None), 443))
    assert unassigned.status == "skip"
    _names_spec(unassigned.fix)
    no_lb = asyncio.run(checks.lb_port(dataclasses.replace(target, lb_address=None), 443))
    assert no_lb.status == "skip"
    _names_spec(no_lb.fix)


@pytest.mark.parametrize("port", [443, 6443, 9345, 8443])
def test_lab_lb_down_fix_names_up_with_the_spec_file(here: Path, port: int) -> None:
    target = _refused_lb(build_target(_lab(here), CheckOptions()))
    result = asyncio.run(checks.lb_port(target, port))
    assert result.failed and "refused" in result.detail
    _names_spec(result.fix)
    assert " up -f " in (result.fix or "")


def test_builtin_lb_down_fix_names_lb_serve(here: Path) -> None:
    spec = _existing_builtin(here, {"provider": "manual", "zone": "hints.test"})
    target = _refused_lb(build_target(spec, CheckOptions()))
    for result in (
        asyncio.run(checks.lb_port(target, 443)),
        asyncio.run(checks.rancher_ping(target)),
        asyncio.run(checks.rancher_redirect(target)),
        asyncio.run(checks.registration(target)),
    ):
        assert result.failed, result
        _names_spec(result.fix)
        assert " lb serve -f " in (result.fix or "")


def test_dns_record_fixes_name_the_spec_file(here: Path) -> None:
    lab = build_target(_lab(here), CheckOptions()).dns
    missing = verdicts_client.dns_record(lab, "rancher.hints.test", Answer("NXDOMAIN"), "x")
    _names_spec(missing.fix)
    assert " up -f " in (missing.fix or "")
    silent = verdicts_client.dns_record(lab, "rancher.hints.test", Answer("TIMEOUT"), "x")
    _names_spec(silent.fix)
    assert " up -f " in (silent.fix or "")
    invalid = verdicts_client.dns_record(
        dataclasses.replace(lab, problem="no address"),
        "rancher.hints.test",
        Answer("NXDOMAIN"),
        "x",
    )
    _names_spec(invalid.fix)
    assert " validate -f " in (invalid.fix or "")
    manual = _existing_builtin(here, {"provider": "manual", "zone": "hints.test"})
    missing = verdicts_client.dns_record(
        build_target(manual, CheckOptions()).dns, "rancher.hints.test", Answer("NXDOMAIN"), "x"
    )
    _names_spec(missing.fix)
    assert " dns publish -f " in (missing.fix or "")


def test_dns_check_without_a_server_names_dns_serve(here: Path) -> None:
    spec = _existing_builtin(here, {"provider": "builtin", "zone": "hints.test"})
    # Nothing listens there: the query times out (or errors) and the hint says how to start.
    result = resolve_check.check(spec, f"{IDLE}:53")
    assert not result.ok
    _names_spec(result.problems[0])
    assert " dns serve -f " in result.problems[0]
