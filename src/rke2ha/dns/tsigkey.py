"""TSIG keys (RFC 8945) read from 0600 files holding the base64 secret alone.

One loader for every key the spec names (`dns.rfc2136.key_file`, the built-in server's
`dns.builtin.transfer_key.key_file`), so both refuse the same bad files with the same
messages. The secret never appears in an error or a log line: only the file's path.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.tsig

from rke2ha.errors import InvalidError
from rke2ha.secretfiles import read_secret

ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}


@dataclass(frozen=True)
class Tsig:
    name: dns.name.Name
    secret: bytes
    algorithm: dns.name.Name

    @property
    def key(self) -> dns.tsig.Key:
        return dns.tsig.Key(self.name, self.secret, self.algorithm)

    @property
    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        return {self.name: self.key}

    def __repr__(self) -> str:  # the secret stays out of tracebacks and debug logs
        return f"Tsig({self.name}, {self.algorithm})"


def decode_secret(text: str, path: Path) -> bytes:
    """The key bytes of a base64 secret; InvalidError naming `path` when it is not base64."""
    try:
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if not secret:
        raise InvalidError(
            f"{path}: the TSIG secret is not base64; put the key's secret alone in the file "
            "(the `secret` value of `tsig-keygen` output)"
        )
    return secret


def load_tsig(path: Path, name: str, algorithm: str, field: str) -> Tsig:
    """The key named `name` whose secret is in `path` (`field`: the spec field, for errors)."""
    text = read_secret(path, what=f"TSIG secret ({field})")
    try:
        key_name = dns.name.from_text(name)
    except dns.exception.DNSException as err:  # the spec's validator should have caught it
        raise InvalidError(f"{field}: the key name {name!r} is not a DNS name ({err})") from None
    return Tsig(key_name, decode_secret(text, path), ALGORITHMS[algorithm])
