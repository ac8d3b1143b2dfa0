"""Running a command as root over an unprivileged login: `sudo -n` (never a prompt).

`-n` makes sudo fail at once with "a password is required" instead of waiting for one
(sudo(8), option -n). The command goes through `sh -c` so pipes and `;` stay inside sudo.
"""

from __future__ import annotations

import shlex

# What sudo -n prints when it would have to ask (sudo(8); plugins/sudoers/check.c).
_PROMPT_MESSAGES = ("a password is required", "a terminal is required")


def as_root(command: str, privileged: bool) -> str:
    """`command` as root: as is for root, through `sudo -n sh -c` for anyone else."""
    return command if privileged else f"sudo -n sh -c {shlex.quote(command)}"


def wanted_password(exit_status: int | None, stderr: str) -> bool:
    """True when sudo refused because it would have prompted for a password."""
    return exit_status == 1 and any(m in stderr for m in _PROMPT_MESSAGES)
