"""Whether a request whose try on one node failed may be sent to another node: the one rule.

Every path that can send a request twice (the task path in `exchange.py`, the callback
path in `fast.py`, and the hand-over between them) asks `may_retry`; none decides alone.

Why these conditions:
- RFC 9110 §9.2.2: "A proxy MUST NOT automatically retry non-idempotent requests." GET,
  HEAD, OPTIONS, TRACE, PUT and DELETE are the idempotent methods (§9.2.2); a POST or a
  PATCH that reached a node may have acted there even if no answer came back.
- A failed connect sent nothing, so any method may go elsewhere. This is HAProxy's
  default (`retry-on conn-failure`, "retry when the connection ... failed and the request
  could not be sent"); HAProxy repeats a request that was sent only when told to
  (`empty-response` ...) and warns it is dangerous without replay protection
  (https://docs.haproxy.org/2.6/configuration.html#4.2-retry-on).
- A sent request is repeated only in the one race a proxy cannot avoid: a keep-alive
  connection the node closed while idle (nodes close idle connections on their own
  clock, `backend_conns.py`) that was reused just before the close arrived. A new
  connection that closes before answering is a node failing this request: not repeated.
- Nothing of the response may have arrived: a client must never see two answers or half
  of one followed by another.
- A body must still be whole in hand to be sent again; bodies are streamed to the node,
  not kept, so today a request with a body is never repeated (`body_held` stays False).
"""

from __future__ import annotations

from enum import Enum

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class Failure(Enum):
    """How a try failed."""

    CONNECT = "connect"  # the connection to the node could not be made: nothing was sent
    CLOSED = "closed"  # the node closed or reset the connection


def may_retry(
    failure: Failure,
    method: str,
    *,
    reused: bool,
    response_started: bool,
    has_body: bool,
    body_held: bool = False,
) -> bool:
    """True when the request may be sent to another node after `failure` (module docstring).

    `reused`: the try ran on a keep-alive connection that had carried a response before;
    `response_started`: any byte of the node's response arrived; `has_body`: the request
    has a body (chunked, or a Content-Length above 0); `body_held`: all of it is still in
    the load balancer's hands."""
    if failure is Failure.CONNECT:
        return True
    return reused and not response_started and method in IDEMPOTENT and (not has_body or body_held)
