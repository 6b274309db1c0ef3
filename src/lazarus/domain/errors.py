"""The one exception tree of Lazarus.

    LazarusError
    +-- ApiError                 carries an OpenNebula error code; the API layer turns it into
    |   |                        [false, "[method] text", code, resp_id, 0]
    |   +-- AuthenticationError  0x0100
    |   +-- AuthorizationError   0x0200
    |   +-- NoExistsError        0x0400  unknown id
    |   +-- ActionError          0x0800  refused state transition, e.g. "This action is not
    |   |                                available for state RUNNING"
    |   +-- RpcApiError          0x1000  bad parameters (wrong type, wrong filter)
    |   +-- InternalError        0x2000
    |   |   +-- StaleLeaderError         a write of a controller whose leadership epoch was
    |   |                                superseded (cluster/fenced.py); nothing of it landed
    |   +-- AllocateError        0x4000  malformed template on allocate
    |   +-- LockedError          0x8000
    +-- TemplateSyntaxError      a template that does not parse (becomes an ApiError upstream)
    +-- DriverError              a hypervisor / fence / hook driver failed
        +-- TemporaryDriverError may succeed if retried (connection refused, timeout)
        +-- PermanentDriverError will not succeed if retried (bad credentials, no such domain)
        +-- CoordinationError    the coordination service (etcd) unreachable or refusing

Adapters translate third-party exceptions into DriverError subclasses at their edge and chain
the original with `raise ... from exc`; nothing above the adapters sees a libvirt or sqlite
exception.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    SUCCESS = 0x0000
    AUTHENTICATION = 0x0100
    AUTHORIZATION = 0x0200
    NO_EXISTS = 0x0400
    ACTION = 0x0800
    RPC_API = 0x1000
    INTERNAL = 0x2000
    ALLOCATE = 0x4000
    LOCKED = 0x8000


class LazarusError(Exception):
    """Base of every error Lazarus raises on purpose."""


class ApiError(LazarusError):
    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, resp_id: int = -1) -> None:
        super().__init__(message)
        self.message = message
        self.resp_id = resp_id


class AuthenticationError(ApiError):
    code = ErrorCode.AUTHENTICATION


class AuthorizationError(ApiError):
    code = ErrorCode.AUTHORIZATION


class NoExistsError(ApiError):
    code = ErrorCode.NO_EXISTS


class ActionError(ApiError):
    code = ErrorCode.ACTION


class RpcApiError(ApiError):
    code = ErrorCode.RPC_API


class InternalError(ApiError):
    code = ErrorCode.INTERNAL


# The text every store adapter puts before a database failure (full disk, read-only file,
# busy): the transaction was rolled back, nothing of it landed. Over the wire the code stays
# INTERNAL (as oned's); HA callers retry such a write for a while (api/client.py store_wait).
STORE_ERROR = "Store error: "


def is_store_failure(exc: BaseException) -> bool:
    """A call refused because the store could not write (an InternalError with STORE_ERROR)."""
    return isinstance(exc, InternalError) and STORE_ERROR in exc.message


class StaleLeaderError(InternalError):
    """A write transaction refused because the store's `leader_epoch` is no longer this
    controller's epoch: a newer leader took over (issue 14's fencing token). Not a store
    failure (is_store_failure is False): retrying on this controller cannot succeed."""

    def __init__(self, mine: int, current: int, *, lapsed: bool = False) -> None:
        if lapsed:
            why = f"this controller's lease (epoch {mine}) lapsed before it could renew it"
        elif current > mine:
            why = f"this controller's epoch {mine} was superseded by epoch {current}"
        else:
            why = f"this controller's epoch {mine} is not the store's ({current})"
        super().__init__(f"Not the leader: {why}; the write was refused and nothing of it "
                         "landed.")
        self.mine = mine
        self.current = current
        self.lapsed = lapsed


class AllocateError(ApiError):
    code = ErrorCode.ALLOCATE


class LockedError(ApiError):
    code = ErrorCode.LOCKED


class TemplateSyntaxError(LazarusError):
    """A template text that does not follow the OpenNebula template language."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        where = f" at line {line}, column {column}" if line else ""
        super().__init__(f"{message}{where}")
        self.line = line
        self.column = column


class DriverError(LazarusError):
    """A driver (hypervisor, fence agent, hook runner) could not do what was asked."""


class TemporaryDriverError(DriverError):
    """Worth retrying: timeouts, refused or lost connections."""


class PermanentDriverError(DriverError):
    """Not worth retrying: bad credentials, unknown domain, invalid definition."""


class CoordinationError(DriverError):
    """The coordination service (etcd) could not be reached or answered an error."""
