"""The two kinds of failure every command reports, and the exit code each one means.

Exit codes are part of the interface (README: The spec, "Exit codes everywhere"): 1 when
the thing checked is wrong (an invalid spec, a failed check), 2 when the input cannot be
used at all (missing or unreadable file, not YAML, bad flags). Library code raises these;
`cli.py` turns them into one line on stderr and the exit code, never a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


class Rke2haError(Exception):
    """A failure the user can act on: `str(err)` says what is wrong and how to fix it."""

    exit_code = EXIT_INVALID


class UsageError(Rke2haError):
    """Bad flags, a missing or unreadable file, input that is not YAML: exit 2."""

    exit_code = EXIT_USAGE


class InvalidError(Rke2haError):
    """Input that was read but is wrong (spec schema, failed rule, failed check): exit 1."""

    exit_code = EXIT_INVALID
