"""Failures that are ours, not the target's: the errno classification, the judgement of a result
(which timeouts are ours), and the outage state machine's indifference to them."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta

import pytest

from ispmon.availability.outages import EndpointState, OutagePolicy, Phase, transition
from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.probes.oserrors import classify_os_error, descriptors_exhausted, resource_errno
from ispmon.probes.resources import EVENT_LOOP, LATE_TIMER_TOLERANCE, judge, resource_failure, resource_of

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
def test_our_exhaustion_classifies_internal(code: int) -> None:
    exc = OSError(code, "no more")
    assert classify_os_error(exc) is ErrorKind.INTERNAL
    assert resource_errno(exc) == errno.errorcode[code]


def test_a_target_failure_is_not_ours() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert classify_os_error(refused) is ErrorKind.REFUSED
    assert resource_errno(refused) is None


def test_resource_errno_looks_through_wrappers() -> None:
    # icmplib re-raises as its own exception (the OSError is the context); aiohttp wraps with
    # `from`; uvloop and 3.11 fold a multi-address connect into one errno-less message.
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as inner:
            raise RuntimeError(str(inner)) from None
    except RuntimeError as outer:
        assert outer.__context__ is not None
        assert resource_errno(outer) == "EMFILE"
    wrapped = ConnectionError("connect failed")
    wrapped.__cause__ = OSError(errno.ENFILE, "Too many open files in system")
    assert resource_errno(wrapped) == "ENFILE"
    multi = OSError("Multiple exceptions: [Errno 111] Connect call failed, [Errno 24] Too many open files")
    assert resource_errno(multi) == "EMFILE"
    # An address we could not even try might have answered: ours wins over the refusal.
    assert classify_os_error(multi) is ErrorKind.INTERNAL


def test_descriptors_are_not_exhausted_here() -> None:
    assert descriptors_exhausted() is None


def _down(kind: ErrorKind, text: str = "failed") -> ProbeResult:
    return ProbeResult.down(kind, text, None, status_code=503)


def test_a_timeout_on_time_is_the_targets() -> None:
    result = _down(ErrorKind.TIMEOUT, "no reply within 2 s")
    assert judge(result, overrun=0.01) is result
    assert judge(result, overrun=-1.5) is result  # ended early (c-ares gives up before us)


def test_a_timer_that_fired_late_is_ours() -> None:
    result = judge(_down(ErrorKind.TIMEOUT, "no reply within 2 s"), overrun=LATE_TIMER_TOLERANCE + 0.3)
    assert (result.status, result.error_kind) == (Status.UNKNOWN, ErrorKind.INTERNAL)
    assert result.details == {"status_code": 503, "resource": EVENT_LOOP}
    assert result.error is not None and result.error.startswith(
        "no reply within 2 s, but our timer fired 400 ms late"
    )


@pytest.mark.parametrize(
    "kind", [ErrorKind.UNEXPECTED_STATUS, ErrorKind.PATTERN_MISMATCH, ErrorKind.TLS, ErrorKind.PROTOCOL]
)
def test_an_answer_from_the_target_is_never_ours(kind: ErrorKind) -> None:
    # Whatever the clock says: the target answered, and what it said is wrong.
    result = _down(kind)
    assert judge(result, overrun=5.0) is result


def test_internal_is_never_down() -> None:
    result = judge(ProbeResult.down(ErrorKind.INTERNAL, "cannot connect: Too many open files"), overrun=0)
    assert (result.status, result.error_kind) == (Status.UNKNOWN, ErrorKind.INTERNAL)
    assert resource_of(result) == "os"
    up = ProbeResult(Status.UP, 3.0)
    assert judge(up, overrun=9.0) is up


def test_resource_of_only_names_resource_failures() -> None:
    assert resource_of(resource_failure("EMFILE", "cannot connect")) == "EMFILE"
    assert resource_of(ProbeResult(Status.UNKNOWN, None, ErrorKind.INTERNAL, "bug")) is None
    assert resource_of(_down(ErrorKind.TIMEOUT)) is None


@pytest.mark.parametrize(
    "state",
    [
        EndpointState(status=Status.DOWN, consecutive_failures=2, first_failure_at=T0),
        EndpointState(
            status=Status.DOWN, phase=Phase.VERIFYING, consecutive_failures=3, verifications_left=2
        ),
        EndpointState(status=Status.DOWN, phase=Phase.OUTAGE, consecutive_failures=5, outage_id=7),
        EndpointState(status=Status.UP, phase=Phase.OUTAGE, consecutive_successes=1, outage_id=7),
    ],
)
def test_the_state_machine_ignores_resource_failures(state: EndpointState) -> None:
    ours = resource_failure("EMFILE", "cannot connect to 192.0.2.1:80: Too many open files")
    assert transition(state, ours, T0 + timedelta(minutes=1), OutagePolicy()) == (state, [])
