"""Reaching the machines over SSH: who to log in as where (`target`), whose host key to
trust (`knownhosts`, sans-I/O), running commands as root (`sudo`), and the asyncssh adapter
that does the I/O (`connection`). README: Pre-flight; docs/architecture.md (sans-I/O)."""
