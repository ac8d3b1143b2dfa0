"""A backend *process* for the load balancer tests (one we may SIGSTOP or kill).

    python backend_server.py --host H --echo-port P [--http-port Q] [--name N]
        [--tls CERT KEY] [--readyz-file F] [--token T]

- echo port: writes `hello <name>\\n`, then echoes every byte back.
- http port (optionally TLS): `/healthz` -> 200 ok, `/ping` -> 200 pong, `/readyz` -> the
  status written in `--readyz-file` (default 200); with `--token`, `/readyz` answers 401
  unless `Authorization: Bearer <token>` is sent (like RKE2 without anonymous auth).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
from pathlib import Path


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
    writer.write(f"hello {name}\n".encode())
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, args: argparse.Namespace
) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    status, body = 404, "not found"
    if path == "/healthz":
        status, body = 200, "ok"
    elif path == "/ping":
        status, body = 200, "pong"
    elif path == "/readyz":
        wanted = int(Path(args.readyz_file).read_text().strip()) if args.readyz_file else 200
        authorised = headers.get("authorization") == f"Bearer {args.token}"
        if args.token and not authorised:
            status, body = 401, "Unauthorized"
        else:
            status, body = wanted, "ok" if wanted == 200 else "not ready"
    payload = body.encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    writer.write(head.encode() + payload)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--echo-port", type=int)
    parser.add_argument("--http-port", type=int, action="append", default=[])
    parser.add_argument("--name", default="backend")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--readyz-file")
    parser.add_argument("--token")
    args = parser.parse_args()
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)
    servers = []
    if args.echo_port:
        servers.append(
            await asyncio.start_server(
                lambda r, w: echo(r, w, args.name), args.host, args.echo_port, reuse_address=True
            )
        )
    for port in args.http_port:
        servers.append(
            await asyncio.start_server(
                lambda r, w: http(r, w, args), args.host, port, ssl=context, reuse_address=True
            )
        )
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
