"""`tls.certificate` over real TLS: servers on loopback serving lab-CA certificates that are
valid, expired, for another name, or offered over TLS 1.1 as well."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rke2ha.check import checks
from rke2ha.check.result import CheckResult
from rke2ha.check.target import CheckOptions, build_target
from rke2ha.lab.ca import LabCA
from rke2ha.spec import Spec

HOST = "rancher.lab.test"
ADDRESS = "127.0.60.200"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabCA, Path]:
    folder = tmp_path_factory.mktemp("ca")
    lab_ca = LabCA.create()
    lab_ca.save(folder / "ca.crt", folder / "ca.key")
    return lab_ca, folder / "ca.crt"


def server_context(
    ca: LabCA, folder: Path, names: list[str], days: float, *, legacy: bool = False
) -> ssl.SSLContext:
    now = datetime.now(UTC)
    issued = ca.issue(names, not_before=now - timedelta(days=30), not_after=now + timedelta(days))
    issued.save(folder / "leaf.crt", folder / "leaf.key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "leaf.crt", folder / "leaf.key")
    if legacy:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


@asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, ADDRESS, 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def spec() -> Spec:
    return Spec.model_validate(
        {
            "name": "lab",
            "hostname": HOST,
            "provider": "existing",
            "nodes": [{"name": "n1", "address": "127.0.60.201"}],
            "load_balancer": {"address": ADDRESS},
            "dns": {"provider": "manual", "zone": "lab.test"},
        }
    )


def check_tls(context: ssl.SSLContext, ca_file: Path | None) -> CheckResult:
    async def run() -> CheckResult:
        async with tls_server(context) as port:
            # The offset moves spec port 443 onto the test server's ephemeral port.
            target = build_target(spec(), CheckOptions(port_offset=port - 443, ca_file=ca_file))
            return await checks.tls_certificate(target, datetime.now(UTC))

    return asyncio.run(run())


def test_valid_certificate_passes(ca: tuple[LabCA, Path], tmp_path: Path) -> None:
    result = check_tls(server_context(ca[0], tmp_path, [HOST], 200), ca[1])
    assert result.status == "pass", result.detail
    assert "TLSv1.3" in result.detail and f"--ca {ca[1]}" in result.detail


def test_expired_certificate_fails(ca: tuple[LabCA, Path], tmp_path: Path) -> None:
    result = check_tls(server_context(ca[0], tmp_path, [HOST], -1), ca[1])
    assert result.status == "fail"
    assert "expired" in result.detail and "renew" in result.fix


def test_certificate_expiring_soon_fails(ca: tuple[LabCA, Path], tmp_path: Path) -> None:
    result = check_tls(server_context(ca[0], tmp_path, [HOST], 3), ca[1])
    assert result.status == "fail" and "days left" in result.detail


def test_certificate_for_another_name_fails(ca: tuple[LabCA, Path], tmp_path: Path) -> None:
    result = check_tls(server_context(ca[0], tmp_path, ["other.lab.test"], 200), ca[1])
    assert result.status == "fail"
    assert "do not cover" in result.detail and "Hostname mismatch" in result.detail


def test_private_ca_without_ca_flag_fails_against_system_roots(
    ca: tuple[LabCA, Path], tmp_path: Path
) -> None:
    result = check_tls(server_context(ca[0], tmp_path, [HOST], 200), None)
    assert result.status == "fail"
    assert "system roots" in result.detail and "--ca" in result.fix


def test_server_accepting_tls_1_1_fails(ca: tuple[LabCA, Path], tmp_path: Path) -> None:
    result = check_tls(server_context(ca[0], tmp_path, [HOST], 200, legacy=True), ca[1])
    assert result.status == "fail" and "also accepts TLSv1.1" in result.detail


def test_nothing_listening_fails_quickly() -> None:
    target = build_target(spec(), CheckOptions(port_offset=1, timeout=1.0))
    result = asyncio.run(checks.tls_certificate(target, datetime.now(UTC)))
    assert result.status == "fail" and "refused" in result.detail
