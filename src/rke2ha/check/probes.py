"""Low-level probes of a live deployment: HTTP(S), TLS inspection, websocket.

Thin asyncio adapters: they connect to an address (not a name) with the Rancher hostname
as SNI and Host, bound every step by a timeout, and return what they saw as plain data.
Whether that is healthy is decided in `verdicts`. Failures to get an answer at all are a
`ProbeError` whose message is one short, human reason ("connection refused", "no answer
within 2s"), never a traceback. Responses are parsed with httptools, websockets speak the
`websockets` library's client. DNS goes through `rke2ha.dns.resolve_check.ask`
(dnspython), the same query `rke2ha dns check` makes.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ssl
import warnings
from pathlib import Path

import httptools
import websockets
import websockets.asyncio.client
import websockets.exceptions

from rke2ha.check.observations import HttpAnswer, TlsObservation, WebsocketAnswer
from rke2ha.check.target import Endpoint

MAX_BODY = 64 * 1024  # health answers are tiny; never buffer a large page
USER_AGENT = "rke2ha-check"


class ProbeError(Exception):
    """No usable answer: `str(err)` is a short reason for a check's detail."""


def _reason(err: BaseException, endpoint: Endpoint, timeout: float) -> str:
    if isinstance(err, TimeoutError):
        return f"no answer from {endpoint} within {timeout:g}s"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected by {endpoint}: {err.verify_message}"
    if isinstance(err, ssl.SSLError):
        return f"TLS handshake with {endpoint} failed: {err.reason or err}"
    if isinstance(err, ConnectionRefusedError):
        return f"connection to {endpoint} refused"
    if isinstance(err, ConnectionResetError):
        return f"connection to {endpoint} reset"
    if isinstance(err, OSError) and err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"{endpoint} unreachable"
    if isinstance(err, OSError):
        return f"cannot connect to {endpoint}: {err.strerror or err}"
    return f"{endpoint}: {err}"


# ---- TLS contexts -----------------------------------------------------------------------


@functools.cache
def insecure_context() -> ssl.SSLContext:
    """For reachability probes: the certificate is judged by `tls.certificate` alone.

    The 6443 and 9345 certificates come from RKE2's own CA, which a caller rarely holds;
    the load balancer's health checks do not verify them either. One shared context with
    no trust store loaded: loading the system roots costs tens of milliseconds each time.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def verifying_context(ca_file: Path | None) -> ssl.SSLContext:
    """Chain and hostname verification against `ca_file`, or the system roots."""
    if ca_file is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(ca_file))


def legacy_context() -> ssl.SSLContext:
    """A client that offers only TLS 1.0/1.1: a server that accepts it is too permissive."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    # OpenSSL's default security level refuses to even offer TLS < 1.2.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


# ---- HTTP -----------------------------------------------------------------------------


class _Collector:
    """httptools callbacks: gather one response."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.headers_done = False
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        room = MAX_BODY - len(self.body)
        if room > 0:
            self.body += body[:room]

    def on_message_complete(self) -> None:
        self.done = True


class HttpConnection:
    """One HTTP/1.1 connection to an address, optionally over TLS with an SNI name."""

    def __init__(
        self, endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.endpoint = endpoint
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        *,
        tls: ssl.SSLContext | None = None,
        sni: str | None = None,
        timeout: float,
        proxy_header: bytes | None = None,
    ) -> HttpConnection:
        """`proxy_header` goes first, before TLS: a node's ingress configured for PROXY
        protocol (`load_balancer.send_proxy`) refuses a connection without one."""
        try:
            async with asyncio.timeout(timeout):
                if proxy_header is None:
                    reader, writer = await asyncio.open_connection(
                        endpoint.host,
                        endpoint.port,
                        ssl=tls,
                        server_hostname=sni if tls is not None else None,
                        ssl_handshake_timeout=timeout if tls is not None else None,
                    )
                else:
                    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
                    writer.write(proxy_header)
                    if tls is not None:
                        await writer.start_tls(tls, server_hostname=sni)
        except (OSError, TimeoutError) as err:
            raise ProbeError(_reason(err, endpoint, timeout)) from None
        return cls(endpoint, reader, writer)

    @property
    def tls_version(self) -> str | None:
        ssl_object = self._writer.get_extra_info("ssl_object")
        return ssl_object.version() if ssl_object is not None else None

    @property
    def peer_cert_der(self) -> bytes | None:
        ssl_object = self._writer.get_extra_info("ssl_object")
        return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None

    async def request(
        self,
        path: str,
        *,
        host: str,
        token: str | None = None,
        keep_alive: bool = False,
        timeout: float,
    ) -> HttpAnswer:
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            f"User-Agent: {USER_AGENT}",
            "Accept: */*",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        if token is not None:
            lines.append(f"Authorization: Bearer {token}")
        collector = _Collector()
        parser = httptools.HttpResponseParser(collector)
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
                await self._writer.drain()
                while not collector.done:
                    data = await self._reader.read(16384)
                    if not data:
                        break
                    parser.feed_data(data)
        except (OSError, TimeoutError) as err:
            raise ProbeError(_reason(err, self.endpoint, timeout)) from None
        except httptools.HttpParserError as err:
            raise ProbeError(f"{self.endpoint} sent something that is not HTTP: {err}") from None
        if not collector.headers_done:
            raise ProbeError(f"{self.endpoint} closed the connection without an HTTP answer")
        return HttpAnswer(
            status=int(parser.get_status_code()),
            headers=collector.headers,
            body=bytes(collector.body),
            tls_version=self.tls_version,
            peer_cert_der=self.peer_cert_der,
        )

    async def close(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()
        except (OSError, TimeoutError):
            pass  # the peer may be frozen or gone; the socket is closed on our side


async def http_get(
    endpoint: Endpoint,
    path: str,
    *,
    host: str,
    tls: ssl.SSLContext | None = None,
    token: str | None = None,
    timeout: float,
    proxy_header: bytes | None = None,
) -> HttpAnswer:
    """GET `path` from `endpoint` with Host (and SNI, over TLS) `host`; one connection."""
    connection = await HttpConnection.open(
        endpoint, tls=tls, sni=host, timeout=timeout, proxy_header=proxy_header
    )
    try:
        return await connection.request(path, host=host, token=token, timeout=timeout)
    finally:
        await connection.close()


async def tcp_connect(endpoint: Endpoint, *, timeout: float) -> None:
    """Open and close a TCP connection (for ports without an application check)."""
    connection = await HttpConnection.open(endpoint, timeout=timeout)
    await connection.close()


# ---- TLS inspection --------------------------------------------------------------------


async def _handshake(
    endpoint: Endpoint, sni: str, context: ssl.SSLContext, timeout: float
) -> HttpConnection:
    return await HttpConnection.open(endpoint, tls=context, sni=sni, timeout=timeout)


async def _verify(endpoint: Endpoint, sni: str, ca_file: Path | None, timeout: float) -> str | None:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port, ssl=verifying_context(ca_file), server_hostname=sni
            )
    except ssl.SSLCertVerificationError as err:
        return str(err.verify_message)
    except ssl.SSLError as err:
        return f"handshake failed: {err.reason or err}"
    except (OSError, TimeoutError) as err:
        return _reason(err, endpoint, timeout)
    writer.close()
    return None


async def _legacy(endpoint: Endpoint, sni: str, timeout: float) -> str | None:
    try:
        connection = await _handshake(endpoint, sni, legacy_context(), timeout)
    except ProbeError:
        return None
    version = connection.tls_version
    await connection.close()
    return version


async def tls_inspect(
    endpoint: Endpoint, sni: str, *, ca_file: Path | None, timeout: float
) -> TlsObservation:
    """Three handshakes at once: plain (leaf, version), verifying, TLS 1.0/1.1 only."""
    # The verifying and legacy probes report failures as values; only the plain one raises.
    plain, verify_error, legacy_version = await asyncio.gather(
        _handshake(endpoint, sni, insecure_context(), timeout),
        _verify(endpoint, sni, ca_file, timeout),
        _legacy(endpoint, sni, timeout),
        return_exceptions=True,
    )
    if isinstance(plain, BaseException):
        raise plain
    if isinstance(verify_error, BaseException):
        raise verify_error
    if isinstance(legacy_version, BaseException):
        raise legacy_version
    connection = plain
    leaf = connection.peer_cert_der
    version = connection.tls_version
    await connection.close()
    if leaf is None or version is None:
        raise ProbeError(f"{endpoint} completed TLS without a certificate")
    return TlsObservation(version, leaf, verify_error, legacy_version)


# ---- websocket ---------------------------------------------------------------------------


class WebsocketRefused(ProbeError):
    """The server answered the upgrade with an HTTP status instead of 101."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def websocket_open(
    endpoint: Endpoint,
    path: str,
    *,
    hostname: str,
    token: str | None,
    timeout: float,
    message_wait: float,
) -> WebsocketAnswer:
    """Open wss://hostname/path at `endpoint`; wait up to `message_wait` for a frame."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    uri = f"wss://{hostname}{path}"
    try:
        async with asyncio.timeout(timeout + message_wait + 1.0):
            async with websockets.asyncio.client.connect(
                uri,
                host=endpoint.host,
                port=endpoint.port,
                ssl=insecure_context(),
                server_hostname=hostname,
                additional_headers=headers,
                open_timeout=timeout,
                close_timeout=0.5,
                proxy=None,  # never through a proxy from the environment
                user_agent_header=USER_AGENT,
            ) as socket:
                try:
                    message = await asyncio.wait_for(socket.recv(), message_wait)
                except TimeoutError:
                    return WebsocketAnswer(None)
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                return WebsocketAnswer(text)
    except websockets.exceptions.InvalidStatus as err:
        status = err.response.status_code
        raise WebsocketRefused(status, f"upgrade answered with HTTP {status}") from None
    except websockets.exceptions.ConnectionClosed as err:
        raise ProbeError(f"websocket closed by {endpoint} right after opening: {err}") from None
    except websockets.exceptions.InvalidHandshake as err:
        raise ProbeError(f"websocket handshake with {endpoint} failed: {err}") from None
    except (OSError, TimeoutError) as err:
        raise ProbeError(_reason(err, endpoint, timeout)) from None
