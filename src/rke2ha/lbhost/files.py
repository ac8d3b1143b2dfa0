"""Files rke2ha installs beside an engine's config on a host: what they are, how to read
them back, and the steps that install, check and remove them. Pure: no I/O.

A layer 7 config names its certificate by path and the health token reaches HAProxy
through its environment, so those files must be on the host before the config that needs
them runs, and `down` must remove exactly them. Each goes the config's way
(`decide.up_steps`): uploaded to `<path>.rke2ha-new`, checked together with the new
config by the host's own binary, then moved into place; a file of the host's own at that
path is kept as `<path>.rke2ha-orig` and put back by `down`.

- HAProxy's `crt` is one PEM holding the certificate chain and the private key
  (HAProxy 2.6 configuration.txt, bind option `crt`: "a PEM file containing both the
  required certificates and any associated private keys"; Debian's
  /usr/share/doc/haproxy/configuration.txt.gz).
- nginx reads the chain from `ssl_certificate`, the primary certificate first, then the
  intermediates (nginx.org/en/docs/http/ngx_http_ssl_module.html#ssl_certificate), and
  the key from `ssl_certificate_key`; the master process (root) must be able to read the
  key, the workers need not (nginx.org/en/docs/http/configuring_https_servers.html).
- The token: `EnvironmentFile=` in a drop-in `haproxy.service.d/*.conf`
  (systemd.unit(5), "drop-in" directories; systemd.exec(5), EnvironmentFile=: "read
  shortly before the process is executed", systemd 252 on Debian bookworm). A reload
  keeps the master's environment (HAProxy re-executes itself on SIGUSR2 with what it
  has: management.txt, "reexecuting itself"), so a changed token needs a restart; a
  changed drop-in needs `systemctl daemon-reload` before it counts.
Secret files are 0600, root's (the steps run as root); their text is a step's stdin,
never part of a command line or a message.
"""

from __future__ import annotations

import hashlib
import os.path
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rke2ha.render.haproxy import TOKEN_ENV

NEW = ".rke2ha-new"
ORIG = ".rke2ha-orig"
DAEMON_RELOAD = "systemctl daemon-reload"


@dataclass(frozen=True)
class SideFile:
    path: str
    text: str = field(repr=False)
    mode: str = "0600"
    dropin: bool = False  # a systemd drop-in: `daemon-reload` after it changes
    restart: bool = False  # read only when the engine starts: a change restarts it
    dir_mode: str = "0700"  # of its folder, when rke2ha has to make it
    env: str | None = None  # the variable it sets for the engine (an environment file)

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def staged(self) -> str:
        return self.path + NEW

    @property
    def original(self) -> str:
        return self.path + ORIG

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)

    @property
    def secret(self) -> bool:
        return self.mode == "0600"


def fingerprint(shas: Mapping[str, str | None]) -> str:
    """One digest for a set of files (path -> sha256, None: absent), for the plan: a
    change shows as a new fingerprint, never as the files' text."""
    if not shas:
        return "none"
    digest = hashlib.sha256()
    for path in sorted(shas):
        digest.update(f"{path}\0{shas[path] or '-'}\0".encode())
    return digest.hexdigest()[:16]


def facts_lines(paths: Iterable[str]) -> list[str]:
    """Shell lines printing `file:<path>=<sha>`, `orig:<path>=<sha>` and `dir:<folder>=1`
    (present) for `decide.parse_facts`; read-only."""
    lines: list[str] = []
    folders: list[str] = []
    for path in paths:
        for key, name in (("file", path), ("orig", path + ORIG)):
            quoted = shlex.quote(name)
            lines.append(
                f"echo {shlex.quote(key + ':' + path)}=$([ -f {quoted} ] && sha256sum {quoted}"
                " | cut -d' ' -f1)"
            )
        folder = os.path.dirname(path)
        if folder not in folders:
            folders.append(folder)
            quoted = shlex.quote(folder)
            lines.append(f"echo {shlex.quote('dir:' + folder)}=$([ -d {quoted} ] && echo 1)")
    return lines


@dataclass(frozen=True)
class FileFacts:
    """What `facts_lines` printed: sha256 by path (None: no such file)."""

    shas: Mapping[str, str | None] = field(default_factory=dict)
    originals: Mapping[str, str | None] = field(default_factory=dict)
    folders: frozenset[str] = frozenset()

    def sha(self, path: str) -> str | None:
        return self.shas.get(path)

    def original(self, path: str) -> str | None:
        return self.originals.get(path)


def parse_file_facts(values: Mapping[str, str]) -> FileFacts:
    shas: dict[str, str | None] = {}
    originals: dict[str, str | None] = {}
    folders: set[str] = set()
    for key, value in values.items():
        kind, _, path = key.partition(":")
        if kind == "file":
            shas[path] = value or None
        elif kind == "orig":
            originals[path] = value or None
        elif kind == "dir" and value:
            folders.add(path)
    return FileFacts(shas, originals, frozenset(folders))


def changed(files: Iterable[SideFile], found: FileFacts) -> list[SideFile]:
    return [f for f in files if found.sha(f.path) != f.sha]


def check_text(config: str, files: Iterable[SideFile]) -> str:
    """The new config naming the staged copies of `files` instead of their final paths,
    so the host's binary checks the new config with the new files before either is in
    place (the staged paths are the final ones plus a suffix: no other text matches)."""
    for side in files:
        config = config.replace(side.path, side.staged)
    return config


# Where the rendered drop-in goes (its own header says so: `render.haproxy`).
DROPIN = "/etc/systemd/system/haproxy.service.d/rke2ha-health-token.conf"
TOKEN_ENV_FILE = "haproxy/health-token.env"


def side_files(engine: str, rendered: Mapping[str, str], config: str) -> tuple[SideFile, ...]:
    """The engine's files of a rendering made for the hosts' folders (`Layout` with /etc as
    base: `haproxy/tls/x.pem` is /etc/haproxy/tls/x.pem, the path its config names), all
    but the config itself (relative path `config`)."""
    out: list[SideFile] = []
    for relative, text in sorted(rendered.items()):
        if not relative.startswith(f"{engine}/") or relative == config:
            continue
        if relative.endswith("/rke2ha-health-token.conf"):
            out.append(SideFile(DROPIN, text, mode="0644", dropin=True, dir_mode="0755"))
        elif relative == TOKEN_ENV_FILE:
            out.append(SideFile(f"/etc/{relative}", text, restart=True, env=TOKEN_ENV))
        else:  # a layer 7 certificate chain or key: 0600 whether it holds the key or not
            out.append(SideFile(f"/etc/{relative}", text))
    return tuple(out)
