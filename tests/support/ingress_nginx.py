"""Real nginx configured the way RKE2's ingress-nginx configures itself, as one node's 80/443.

The configuration follows ingress-nginx's template (kubernetes/ingress-nginx,
rootfs/etc/nginx/template/nginx.tmpl), reduced to what a load balancer in front can see:

- The catch-all server `server_name _` is the `default_server` of both listeners. Only it has
  `location /healthz` answering 200 (the template emits that location only
  `{{ if eq $server.Hostname "_" }}`, "health checks in cloud providers require the use of
  port 80"); every other path of it answers 404, as the default backend does. On 443 it serves
  a self-signed certificate for a name no client asks for (ingress-nginx's "fake
  certificate").
- Once "Rancher is installed" (Rancher's Ingress exists) a server for the Rancher hostname
  listens on 80 and 443. With `rancher_tls="rancher"` the Ingress has a `tls:` section, so
  ingress-nginx's default ssl-redirect answers 308 whenever `$pass_access_scheme` is http
  (kubernetes/ingress-nginx, rootfs/etc/nginx/lua/lua_ingress.lua, `redirect_to_https` and
  `_M.rewrite`). Its Location is `https://` + `$best_http_host` (the Host header as sent,
  `ngx.var.http_host or ngx.var.host`, so its case is kept; with use-forwarded-headers the
  first `X-Forwarded-Host` instead) cut at the first `:` + the request URI with one
  trailing `/` removed (`preserve_trailing_slash` is off by default;
  kubernetes/ingress-nginx#7144). With `rancher_tls="external"` the Ingress has no TLS and
  the request reaches Rancher, with `Host: $best_http_host` (the template's
  `proxy_set_header Host`, rootfs/etc/nginx/template/nginx.tmpl).
- "Rancher" behind that server, as rancher/dynamiclistener's `HTTPRedirect` (redirect.go)
  wraps it: unless the scheme Rancher is told (`X-Forwarded-Proto`, i.e. the template's
  `$pass_access_scheme`) is `https` or `wss`, or the path starts with `/ping`, `/health` or
  `/.well-known/`, a GET or HEAD answers 302 to `https://<Host, port mangled to
  N*1000+443><request URI>` -- the behaviour behind the layer-7 redirect loop of
  rancher/rancher#31071 -- and any other method 400 `Use HTTPS`. Past that `/ping` answers
  `pong` and any other path 200. Every Rancher answer carries
  `X-Forwarded-Proto-Seen: <scheme Rancher was told>`.
- `use_forwarded_headers` mirrors ingress-nginx's `use-forwarded-headers: "true"`: the client's
  `X-Forwarded-Proto` is trusted; without it nginx passes its own `$scheme`.
- `proxy_protocol` puts `proxy_protocol` on every listener (ingress-nginx's
  `use-proxy-protocol: "true"`): a connection without the PROXY header is refused (400/reset).

API (every node is its own nginx process with its own prefix directory, pid file and error log):

    node = IngressNginx(tmp_path / "n1", "127.0.133.11", "rancher.example.test")
    node.start()                     # waits until 80 and 443 accept
    node.install_rancher()           # rewrites the config and reloads (SIGHUP), waits for it
    node.stop()                      # SIGTERM, reaped; node.start() again brings it back
    node.ca_file                     # PEM to verify the Rancher hostname's certificate
                                     # (pass tls=(cert, key) to share one between nodes)

or the `ingress_nginx` pytest fixture (a factory; every node it made is stopped at teardown):

    def test_x(ingress_nginx):
        node = ingress_nginx("127.0.133.11", "rancher.example.test", rancher=True)

Ports default to 80/443 (needs root, like the real thing); pass `http_port`/`https_port`
elsewhere. Skips the test when no `nginx` binary is installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest
from tests.support.certs import write_self_signed
from tests.support.procs import stop as stop_process
from tests.support.procs import wait_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
FAKE_CERT_NAME = "ingress.local"  # ingress-nginx's fake certificate is for no real name


# How ingress-nginx and Rancher build their redirects, as nginx maps (sources at each).
REDIRECT_MAPS = r"""
    # lua_ingress.lua: best_http_host = http_host or host ($http_host keeps the client's
    # case, $host does not); the ssl-redirect host is its part before the first ':'
    map $http_host $client_http_host {
        default $http_host;
        "" $host;
    }
    map $best_http_host $ssl_redirect_host {
        "~^(?<before_colon>[^:]*)" $before_colon;
    }
    # preserve-trailing-slash off (the default): one trailing '/' of the request URI goes
    map $request_uri $ssl_redirect_uri {
        default $request_uri;
        "~^(?<without_slash>.*)/$" $without_slash;
    }
    # Rancher's HTTPRedirect (rancher/dynamiclistener redirect.go): serve when told
    # https/wss or for /ping*, /health*, /.well-known/*; else 302 for GET/HEAD, 400 else
    map $uri $rancher_plain_http_path {
        default 0;
        "~^/(ping|health|\.well-known/)" 1;
    }
    map "$pass_access_scheme|$rancher_plain_http_path|$request_method" $rancher_answer {
        default 400;
        "~^(https|wss)\|" serve;
        "~^[^|]*\|1\|" serve;
        "~\|(GET|HEAD)$" 302;
    }
    # manglePort: a Host with a port gets port (N // 1000) * 1000 + 443 (80 -> 443,
    # 8080 -> 8443); a Host without one, or a bare IPv6 address, is kept as is
    map $best_http_host $rancher_redirect_host {
        default $best_http_host;
        "~^(?<mangle_host>\[[^\]]*\]|[^:\[\]]*):(?<mangle_thousands>[0-9]*?)[0-9]{1,3}$"
            $mangle_host:${mangle_thousands}443;
    }
"""


class IngressNginx:
    """One node's ingress controller: a real nginx process (see the module docstring)."""

    def __init__(
        self,
        base: Path,
        address: str,
        hostname: str,
        *,
        rancher: bool = False,
        rancher_tls: Literal["rancher", "external"] = "rancher",
        use_forwarded_headers: bool = False,
        proxy_protocol: bool = False,
        http_port: int = 80,
        https_port: int = 443,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.base = base
        self.address = address
        self.hostname = hostname
        self.rancher = rancher
        self.rancher_tls = rancher_tls
        self.use_forwarded_headers = use_forwarded_headers
        self.proxy_protocol = proxy_protocol
        self.http_port = http_port
        self.https_port = https_port
        self.proc: subprocess.Popen[bytes] | None = None
        base.mkdir(parents=True, exist_ok=True)
        (base / "logs").mkdir(exist_ok=True)
        self.conf_file = base / "nginx.conf"
        self.pid_file = base / "nginx.pid"
        self.error_log = base / "logs" / "error.log"
        # `tls`: (cert, key) shared by several nodes, as Rancher's one certificate is
        self.ca_file, self.key_file = tls or write_self_signed(
            base / "rancher.crt", base / "rancher.key", hostname, ca=True
        )
        self.fake_cert, self.fake_key = write_self_signed(
            base / "fake.crt", base / "fake.key", FAKE_CERT_NAME
        )

    # -- configuration -------------------------------------------------------------------

    def _listen(self, port: int, *extra: str) -> str:
        flags = list(extra) + (["proxy_protocol"] if self.proxy_protocol else [])
        return f"listen {self.address}:{port} {' '.join(flags)};".replace("  ", " ")

    def config_text(self) -> str:
        scheme_map = (
            # use-forwarded-headers: trust the client's X-Forwarded-Proto when it sends one,
            # and the first X-Forwarded-Host as $best_http_host (lua_ingress.lua rewrite())
            "map $http_x_forwarded_proto $pass_access_scheme {\n"
            "        default $http_x_forwarded_proto;\n        '' $scheme;\n    }\n"
            "    map $http_x_forwarded_host $best_http_host {\n"
            "        '' $client_http_host;\n        '~^(?<first_forwarded_host>[^,]*)'"
            " $first_forwarded_host;\n    }"
            if self.use_forwarded_headers
            else "map '' $pass_access_scheme {\n        default $scheme;\n    }\n"
            "    map '' $best_http_host {\n        default $client_http_host;\n    }"
        )
        user = "user root;\n" if os.geteuid() == 0 else ""
        rancher = self._rancher_server() if self.rancher else ""
        return f"""{user}worker_processes 1;
daemon off;
pid {self.pid_file};
error_log {self.error_log} notice;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {self.base}/client-body;
    proxy_temp_path {self.base}/proxy-temp;
    fastcgi_temp_path {self.base}/fastcgi-temp;
    uwsgi_temp_path {self.base}/uwsgi-temp;
    scgi_temp_path {self.base}/scgi-temp;
    server_tokens off;
    {scheme_map}
    map "$scheme:$pass_access_scheme" $redirect_to_https {{
        default 0;
        "http:http" 1;
        "https:http" 1;
    }}
{REDIRECT_MAPS}    server {{
        server_name _;
        {self._listen(self.http_port, "default_server")}
        {self._listen(self.https_port, "default_server", "ssl")}
        ssl_certificate {self.fake_cert};
        ssl_certificate_key {self.fake_key};
        location / {{
            return 404;
        }}
        # health checks in cloud providers require the use of port 80 (the template's words)
        location /healthz {{
            return 200;
        }}
    }}
{rancher}}}
"""

    def _rancher_server(self) -> str:
        redirect = (
            # ingress-nginx's ssl-redirect for an Ingress with a tls section (code 308); the
            # template runs it in every location's rewrite phase, before the proxying
            "if ($redirect_to_https) { return 308 https://$ssl_redirect_host$ssl_redirect_uri; }"
            if self.rancher_tls == "rancher"
            else ""
        )
        return f"""    server {{
        server_name {self.hostname};
        {self._listen(self.http_port)}
        {self._listen(self.https_port, "ssl")}
        ssl_certificate {self.ca_file};
        ssl_certificate_key {self.key_file};
        add_header X-Forwarded-Proto-Seen $pass_access_scheme always;
        {redirect}
        # Rancher is proxied with Host: $best_http_host; its HTTPRedirect answers first
        if ($rancher_answer = 302) {{ return 302 https://$rancher_redirect_host$request_uri; }}
        if ($rancher_answer = 400) {{ return 400 "Use HTTPS\\n"; }}
        location / {{
            return 200 "rancher\\n";
        }}
        location = /ping {{
            default_type text/plain;
            return 200 "pong";
        }}
    }}
"""

    def _write(self) -> None:
        self.conf_file.write_text(self.config_text())
        check = subprocess.run(
            [
                NGINX,
                "-t",
                "-p",
                str(self.base),
                "-c",
                str(self.conf_file),
                "-e",
                str(self.error_log),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr

    # -- process -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._write()
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.base), "-c", str(self.conf_file), "-e", str(self.error_log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(self.address, self.http_port)
            wait_port(self.address, self.https_port)
        except AssertionError as err:
            self.stop()
            log = self.error_log.read_text()[-2000:]
            raise AssertionError(f"nginx did not start: {log}") from err

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def reload(self) -> None:
        """Apply the current settings: new config, SIGHUP, wait until the old worker is gone."""
        self._write()
        if not self.running:
            return
        assert self.proc is not None
        before = _worker_pids(self.proc.pid)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = _worker_pids(self.proc.pid)
            if now and not (now & before):
                return
            time.sleep(0.05)
        raise AssertionError(f"nginx did not reload: {self.error_log.read_text()[-2000:]}")

    def install_rancher(self) -> None:
        """Rancher's Ingress appears: the hostname gets its own server (see module docstring)."""
        self.rancher = True
        self.reload()

    def uninstall_rancher(self) -> None:
        self.rancher = False
        self.reload()


def _worker_pids(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    try:
        return {int(p) for p in children.read_text().split()}
    except OSError:
        return set()


@pytest.fixture
def ingress_nginx(tmp_path: Path) -> Iterator[Callable[..., IngressNginx]]:
    """Factory: `ingress_nginx(address, hostname, **IngressNginx options)` -> a started node."""
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed")
    nodes: list[IngressNginx] = []

    def make(address: str, hostname: str, **options: object) -> IngressNginx:
        node = IngressNginx(tmp_path / f"ingress-{address}", address, hostname, **options)  # type: ignore[arg-type]
        nodes.append(node)
        node.start()
        return node

    yield make
    for node in nodes:
        node.stop()
