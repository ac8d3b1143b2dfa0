"""`--hostname NAME` as `lb serve` and `init` take it: a host name, never a URL or a port.

An operator copying Rancher's address from a browser pastes `https://rancher.corp.example/`;
the fix is the host name inside it, so the error gives exactly that.
"""

from __future__ import annotations

import argparse


def host_name(text: str) -> str:
    """A host name as TLS SNI and Host carry it: a URL or a port is refused with the fix."""
    if "://" in text or "/" in text:
        host = text.split("://", 1)[-1].split("/", 1)[0]
        raise argparse.ArgumentTypeError(
            f"{text!r} is a URL; give the host name alone (--hostname {host or 'NAME'})"
        )
    if ":" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a port does not belong here; give the host name alone "
            f"(--hostname {text.split(':', 1)[0] or 'NAME'})"
        )
    return text
