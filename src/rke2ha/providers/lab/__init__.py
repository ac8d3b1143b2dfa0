"""The lab provider: the whole HA topology as local processes on loopback (README: The lab).

- `topology` — from the spec to every lab process: address, ports (real ports as root,
  else + `lab.port_offset`), the command line that starts it, and the URLs to print.
- `processes` — spawn detached, tell our live process from a stale pid, stop for good.
- `records` — the lab's entries in the state file (pid, command line, node state).
- `readiness` — when a started process is ready, when the whole lab is healthy.
- `provider` — describe / plan / apply / destroy / wait_ready for `rke2ha up` and `down`.
- `faults` — kill / freeze / thaw / restart / join one node; the drill's fault injector.
- `status` — what each lab process is doing now, for the live status and `lab status`.
- `session` — the lab's `up` (foreground or detached) and `down`, as library calls.
- `console` — what people see: the live status table, the URL and copy-paste commands.
- `flags` — `up`'s lab-only flags (`--detach`, `--port-offset`) and the hand-over to
  `session` from `rke2ha up` / `rke2ha down` when the spec says `provider: lab`.
"""
