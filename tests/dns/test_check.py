"""`rke2ha dns check` against the built-in server (a real subprocess on 127.0.20.1)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult, free_port
from tests.dns.conftest import SERVER_HOST, Running


def test_record_resolving_to_the_load_balancer_passes(
    write_spec: Callable[..., Path],
    serve: Callable[..., Running],
    run_cli: Callable[..., CliResult],
) -> None:
    spec = write_spec()
    running = serve(spec)
    server = f"{running.host}:{running.port}"
    text = run_cli("dns", "check", "-f", str(spec), "--server", server)
    assert text.code == 0, text.err
    assert text.out.startswith("ok   rancher.example.com. A -> 127.0.20.10")
    result = run_cli("dns", "check", "-f", str(spec), "--server", server, "--json")
    report = json.loads(result.out)
    assert report["ok"] is True and report["answer"]["addresses"] == ["127.0.20.10"]


def test_wrong_address_wrong_type_and_missing_name_fail(
    write_spec: Callable[..., Path],
    serve: Callable[..., Running],
    run_cli: Callable[..., CliResult],
) -> None:
    running = serve(write_spec())
    server = f"{running.host}:{running.port}"
    moved = write_spec({"load_balancer": {"address": "127.0.20.99"}}, "moved.yaml")
    result = run_cli("dns", "check", "-f", str(moved), "--server", server, "--json")
    assert result.code == 1
    [problem] = json.loads(result.out)["problems"]
    assert "127.0.20.10, not a load balancer address (127.0.20.99)" in problem

    cname = write_spec(
        {"load_balancer": {"address": "lb.example.net"}, "dns": {"record": "CNAME"}}, "c.yaml"
    )
    result = run_cli("dns", "check", "-f", str(cname), "--server", server)
    assert result.code == 1 and "is not a CNAME" in result.out

    other = write_spec({"hostname": "other.example.com"}, "o.yaml")
    result = run_cli("dns", "check", "-f", str(other), "--server", server)
    assert result.code == 1 and "NXDOMAIN" in result.out


def test_cname_passes_against_a_cname(
    write_spec: Callable[..., Path],
    serve: Callable[..., Running],
    run_cli: Callable[..., CliResult],
) -> None:
    spec = write_spec({"load_balancer": {"address": "lb.example.net"}, "dns": {"record": "CNAME"}})
    running = serve(spec)
    result = run_cli("dns", "check", "-f", str(spec), "--server", f"{running.host}:{running.port}")
    assert result.code == 0, result.out
    assert "CNAME -> lb.example.net." in result.out


def test_silent_server_and_bad_flag(
    write_spec: Callable[..., Path], run_cli: Callable[..., CliResult]
) -> None:
    spec = write_spec()
    silent = f"{SERVER_HOST}:{free_port(SERVER_HOST)}"
    result = run_cli("dns", "check", "-f", str(spec), "--server", silent, "--json")
    assert result.code == 1
    assert json.loads(result.out)["answer"]["rcode"] in ("TIMEOUT",) or "ERROR" in result.out
    bad = run_cli("dns", "check", "-f", str(spec), "--server", "127.0.20.1:http")
    assert bad.code == 2 and "--server" in bad.err and "Traceback" not in bad.err


def test_server_names_are_resolved_and_bad_ones_refused(
    write_spec: Callable[..., Path], run_cli: Callable[..., CliResult]
) -> None:
    spec = write_spec({"dns": {"provider": "manual"}})
    idle = free_port("127.0.0.1")
    # A name is resolved once (localhost is in /etc/hosts): nothing answers there, exit 1,
    # and the hint is not the built-in server's (provider manual has no server to start).
    named = run_cli("dns", "check", "-f", str(spec), "--server", f"localhost:{idle}")
    assert named.code == 1, named.err
    assert f"(via 127.0.0.1:{idle})" in named.out and "Traceback" not in named.err
    assert "dns serve" not in named.out and "pass --server HOST:PORT" in named.out
    v6 = run_cli("dns", "check", "-f", str(spec), "--server", f"[::1]:{idle}")
    assert v6.code == 1 and f"(via [::1]:{idle})" in v6.out, v6.err
    for value, words in (
        ("x:y:z", "neither an IPv6 address nor a host name"),
        ("bad..name", "cannot resolve 'bad..name'"),
        ("", "has no host"),
    ):
        bad = run_cli("dns", "check", "-f", str(spec), "--server", value)
        assert bad.code == 2, (value, bad.err)
        assert f"--server {value!r}" in bad.err and words in bad.err
        assert "Traceback" not in bad.err and bad.out == ""
