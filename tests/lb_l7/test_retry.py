"""`retry.may_retry`, over every combination of its inputs."""

from __future__ import annotations

import itertools

import pytest

from rke2ha.lb.l7.retry import Failure, may_retry

# RFC 9110 §9.2.2 names these idempotent; everything else (and any other spelling: methods
# are case-sensitive, §9.1) is not.
IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE")
OTHERS = ("POST", "PATCH", "CONNECT", "PROPFIND", "get", "Delete")
# (reused, response_started, has_body, body_held), every combination
FLAGS = list(itertools.product((False, True), repeat=4))


def _asks(failure: Failure, method: str, flags: tuple[bool, bool, bool, bool]) -> bool:
    reused, started, has_body, held = flags
    return may_retry(
        failure,
        method,
        reused=reused,
        response_started=started,
        has_body=has_body,
        body_held=held,
    )


@pytest.mark.parametrize("method", IDEMPOTENT + OTHERS)
@pytest.mark.parametrize("flags", FLAGS)
def test_a_failed_connect_is_retried_for_anything(
    method: str, flags: tuple[bool, bool, bool, bool]
) -> None:
    assert _asks(Failure.CONNECT, method, flags)


@pytest.mark.parametrize("method", OTHERS)
@pytest.mark.parametrize("flags", FLAGS)
def test_a_sent_request_that_is_not_idempotent_is_never_retried(
    method: str, flags: tuple[bool, bool, bool, bool]
) -> None:
    assert not _asks(Failure.CLOSED, method, flags)


@pytest.mark.parametrize("method", IDEMPOTENT)
@pytest.mark.parametrize("flags", FLAGS)
def test_an_idempotent_request_is_retried_only_in_the_keep_alive_race(
    method: str, flags: tuple[bool, bool, bool, bool]
) -> None:
    # Retried exactly when the closed connection was a reused one, nothing came back, and
    # any body is still whole in hand.
    reused, started, has_body, held = flags
    expected = reused and not started and (not has_body or held)
    assert _asks(Failure.CLOSED, method, flags) == expected


def test_the_cases_of_the_issue() -> None:
    def closed(method: str, **kw: bool) -> bool:
        args = {"reused": True, "response_started": False, "has_body": False} | kw
        return may_retry(Failure.CLOSED, method, **args)

    assert not closed("POST")  # a POST without a body on a stale connection: 502, not twice
    assert closed("GET")  # the stale keep-alive race a proxy retries through
    assert not closed("GET", reused=False)  # a new connection closed: the node failed it
    assert not closed("GET", response_started=True)  # half an answer: never a second one
    assert not closed("PUT", has_body=True)  # a streamed body cannot be sent again
    assert closed("PUT", has_body=True, body_held=True)
