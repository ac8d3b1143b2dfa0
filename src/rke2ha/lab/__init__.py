"""The lab: the whole HA topology on one machine (README: The lab).

- `ca` — the lab certificate authority and the leaf certificates it issues.
- `material` — what a lab needs on disk before any process starts (CA, certificates,
  the health token), created once under a lock and reused by every later `up`.
- `node_states` — the node state machine (ready / joining / frozen / down) as a table,
  and what each state shows on each port.
- `node_app` — what each node port answers, as plain request -> response logic.
- `node_setup` — from the spec to one emulator's address, ports (the root / port-offset
  rule) and profile.
- `node_server` — the thin aiohttp adapter that serves `node_app` on real sockets.

Run one emulator with `rke2ha lab node --name NODE -f FILE` (or, on the lab's spawn path,
`python -m rke2ha.commands.lab node ...`, which skips the other commands' imports).

Nothing here is imported eagerly: a node emulator must be listening within a second of
being spawned, so each process imports only the modules it uses.
"""
