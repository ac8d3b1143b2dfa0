"""DNS for the Rancher hostname: the built-in authoritative server and the publishers.

`records` turns the spec into the records that must exist (one place, shared by every
provider), `ownership` says whose they are, `zone` answers queries without I/O, `server`
puts it on sockets, and `publish` drives the rfc2136, route53 and manual publishers
through one describe -> plan -> apply protocol.
"""
