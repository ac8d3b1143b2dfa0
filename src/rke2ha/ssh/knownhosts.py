"""known_hosts in OpenSSH's format, read and judged without I/O.

A server's host key is `known` (an entry for the host holds it), `unknown` (no entry for
the host holds a key of that type) or `changed` (an entry for the host holds another key of
the same type: a reinstalled machine or a man in the middle, never accepted). Entries may
name hosts in plain text (`host`, `[host]:2222`, comma lists, `*`/`?` patterns, `!negated`)
or hashed (`|1|salt|hash`, HMAC-SHA1 of the name, as `ssh-keygen -H` writes them);
`@revoked` keys are refused like a changed one, `@cert-authority` lines are not host keys.
Source: OpenSSH sshd(8), section SSH_KNOWN_HOSTS FILE FORMAT.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Entry:
    line: int  # 1-based line number in the file
    patterns: tuple[str, ...]
    key_type: str  # `ssh-ed25519`, `ecdsa-sha2-nistp256`, ...
    key_data: str  # base64 of the public key blob
    marker: str = ""  # "", "@revoked" or "@cert-authority"


def host_name(host: str, port: int) -> str:
    """How known_hosts names a host: `host` on port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def parse(text: str) -> list[Entry]:
    """Every well-formed line of a known_hosts file (comments, blanks and junk skipped)."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = ""
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3:
            continue
        entries.append(Entry(number, tuple(fields[0].split(",")), fields[1], fields[2], marker))
    return entries


def _hashed_match(pattern: str, name: str) -> bool:
    parts = pattern.split("|")  # "", "1", salt, hash
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except ValueError:
        return False
    mine = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(mine, digest)


def _glob(pattern: str, name: str) -> bool:
    # OpenSSH patterns know `*` and `?` only; `[` is literal (`[host]:port`).
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name) is not None


def names_host(entry: Entry, name: str) -> bool:
    """Whether the entry's host patterns match `name` (a negated match wins)."""
    matched = False
    for pattern in entry.patterns:
        if pattern.startswith("|"):
            matched = matched or _hashed_match(pattern, name)
        elif pattern.startswith("!"):
            if _glob(pattern[1:], name):
                return False
        elif _glob(pattern, name):
            matched = True
    return matched


Verdict = Literal["known", "unknown", "changed", "revoked"]


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    lines: tuple[int, ...] = ()  # the lines that hold a different key (changed, revoked)
    other_types: tuple[str, ...] = ()  # unknown, but keys of these types are known


def entries_for(entries: list[Entry], name: str) -> list[Entry]:
    """The plain host key entries for `name` (no markers)."""
    return [e for e in entries if not e.marker and names_host(e, name)]


def judge(entries: list[Entry], name: str, key_type: str, key_data: str) -> Judgement:
    """What the file says about `name` serving this key."""
    for entry in entries:
        if entry.marker == "@revoked" and entry.key_data == key_data:
            return Judgement("revoked", (entry.line,))
    mine = entries_for(entries, name)
    if any(e.key_type == key_type and e.key_data == key_data for e in mine):
        return Judgement("known")
    same_type = tuple(e.line for e in mine if e.key_type == key_type)
    if same_type:
        return Judgement("changed", same_type)
    return Judgement("unknown", other_types=tuple(sorted({e.key_type for e in mine})))


def fingerprint(key_data: str) -> str:
    """`SHA256:...` as ssh and ssh-keygen -l print it (unpadded base64 of the digest)."""
    digest = hashlib.sha256(base64.b64decode(key_data)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def entry_line(name: str, key_type: str, key_data: str) -> str:
    """The line `--accept-new-host-keys` appends."""
    return f"{name} {key_type} {key_data}\n"
