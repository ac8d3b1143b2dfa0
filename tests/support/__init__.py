"""Helpers several test areas share: certificates, a real BIND `named`, and processes.

Plain functions and context managers (no fixtures), so each area's conftest keeps its own
loopback range, timeouts and fixture scopes and only the mechanics live here."""
