"""Address text checks shared by the renderers and the rules.

Kept apart from both (and on the standard library only) so either can use it without
importing the other's dependencies.
"""

from __future__ import annotations

import ipaddress


def is_ip(text: str) -> bool:
    """Is `text` an IPv4 or IPv6 address literal (not a hostname)?"""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
