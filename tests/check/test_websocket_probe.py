"""`rancher.websocket` over a real TLS websocket server on loopback: skipped without a
token outside the lab (never passed), the token sent as a bearer, 401 -> fix says token."""

from __future__ import annotations

import asyncio
import http
import ssl
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from rke2ha.check import checks
from rke2ha.check.result import CheckResult
from rke2ha.check.target import CheckOptions, load_target
from rke2ha.lab.ca import LabCA
from rke2ha.secretfiles import write_secret
from rke2ha.spec import Spec

HOST = "rancher.example.test"
ADDRESS = "127.0.60.210"
TOKEN = "token-abcde:secret"


def spec() -> Spec:
    return Spec.model_validate(
        {
            "name": "real",
            "hostname": HOST,
            "provider": "existing",
            "nodes": [{"name": "n1", "address": "127.0.60.211"}],
            "load_balancer": {"address": ADDRESS},
            "dns": {"provider": "manual", "zone": "example.test"},
        }
    )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    folder = tmp_path_factory.mktemp("ws")
    LabCA.create().issue([HOST]).save(folder / "c.crt", folder / "c.key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "c.crt", folder / "c.key")
    return context


def rancher_like(connection: ServerConnection, request: Request) -> Response | None:
    if request.path != "/v3/subscribe":
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Unauthorized 401\n")
    return None


async def events(connection: ServerConnection) -> None:
    await connection.send('{"name":"resource.change"}')
    await connection.wait_closed()


def run_check(tls: ssl.SSLContext, token_file: Path | None) -> CheckResult:
    async def run() -> CheckResult:
        async with serve(events, ADDRESS, 0, ssl=tls, process_request=rancher_like) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            options = CheckOptions(port_offset=port - 443, token_file=token_file)
            return await checks.rancher_websocket(load_target(spec(), options))

    return asyncio.run(run())


def test_real_rancher_without_token_is_skipped_not_passed(tls: ssl.SSLContext) -> None:
    result = run_check(tls, None)
    assert result.status == "skip" and not result.ok
    assert "--token" in result.fix


def test_token_is_sent_as_bearer_and_the_stream_opens(tls: ssl.SSLContext, tmp_path: Path) -> None:
    token = tmp_path / "token"
    write_secret(token, f"{TOKEN}\n".encode())
    result = run_check(tls, token)
    assert result.status == "pass", result.detail
    assert "resource.change" in result.detail


def test_rejected_token_fails_with_a_token_fix(tls: ssl.SSLContext, tmp_path: Path) -> None:
    token = tmp_path / "token"
    write_secret(token, b"wrong\n")
    result = run_check(tls, token)
    assert result.status == "fail"
    assert "401" in result.detail and "API token" in result.fix
