"""The error tree of shardcache.

Callers act on what went wrong, so each leaf is named by what the caller can do, and each
also subclasses the builtin it most resembles so that generic handlers keep working::

    CacheError
     ├── ConfigError            (ValueError)        fix the command line or environment
     ├── UnsafeKeyError         (ValueError)        the object key cannot be a local path
     ├── NotFoundError          (FileNotFoundError) bucket, prefix or object does not exist
     ├── AccessDeniedError      (PermissionError)   credentials missing, wrong, or not allowed
     ├── PolicyDeniedError      (PermissionError)   the operator's policy refuses this URL
     ├── UnavailableError       (ConnectionError)   endpoint unreachable or timed out; retry later
     │    └── StalledError                          a request got no complete answer in time
     ├── WaitTimeoutError       (TimeoutError)      less than asked for became local in time
     ├── OverCapacityError      (OSError)           the byte budget or the disk is full
     ├── IntegrityError         (ValueError)        bytes do not match the size/checksum/version
     │    └── VersionChangedError                   the object changed while it was downloaded
     ├── CacheStateError        (RuntimeError)      the cache directory itself is unusable
     ├── OptInError             (ValueError)        a pod's shardcache annotation is malformed
     ├── TargetConflictError    (FileExistsError)   a CSI target is published with other arguments
     └── MountError             (OSError)           a mount system call failed (`errno` says why)

Every kind maps, in one table (`CODES`), to the HTTP status of the agent's API, the gRPC status
of the CSI plugin and the CLI's exit status; the agent server, the agent client and the CSI
service all read it, so a new kind is added in one place. Disk-full is recognised by errno
(and SQLite's result code), never by the wording of a message: `is_disk_full`.

Messages name the object, what was expected and what was found, and what to do next. They
never contain credentials or signed URLs: backend errors pass through `redact()` before they
become a message.
"""

from __future__ import annotations

import errno
import re
import sqlite3
from dataclasses import dataclass


class CacheError(Exception):
    """Root of every error shardcache raises on purpose."""

    #: short machine-readable kind, used in metrics labels and JSON output
    kind = "error"


class ConfigError(CacheError, ValueError):
    kind = "config"


class UnsafeKeyError(CacheError, ValueError):
    kind = "unsafe_key"


class NotFoundError(CacheError, FileNotFoundError):
    kind = "not_found"


class AccessDeniedError(CacheError, PermissionError):
    kind = "access_denied"


class PolicyDeniedError(CacheError, PermissionError):
    kind = "policy_denied"


class UnavailableError(CacheError, ConnectionError):
    kind = "unavailable"


class OverCapacityError(CacheError, OSError):
    kind = "over_capacity"


class IntegrityError(CacheError, ValueError):
    kind = "integrity"


class VersionChangedError(IntegrityError):
    kind = "version_changed"


class CacheStateError(CacheError, RuntimeError):
    kind = "cache_state"


class StalledError(UnavailableError):
    """A request got no complete answer within `read_timeout_s`. A stalled store is rarely
    cured by asking again at once, so a stall uses up the retry budget faster (see
    retry.py). It keeps the kind of its parent: to a caller it is the store being unavailable."""


class WaitTimeoutError(CacheError, TimeoutError):
    """Less of the dataset than asked for became local in time; wait longer or ask less."""

    kind = "timeout"


class OptInError(CacheError, ValueError):
    """A pod's shardcache annotation is malformed; the message names it and shows a valid
    value."""

    kind = "opt_in"


class TargetConflictError(CacheError, FileExistsError):
    """A CSI target path is already published with other arguments (CSI: ALREADY_EXISTS)."""

    kind = "already_exists"


class MountError(CacheError, OSError):
    """A mount system call failed; `errno` says why."""

    kind = "mount"


@dataclass(frozen=True)
class Codes:
    """How one error kind is told to each kind of caller."""

    #: status of the agent's HTTP API (docs/agent-api.md)
    http: int
    #: name of the `grpc.StatusCode` the CSI plugin answers with (kept as a name here so that
    #: this module needs no gRPC)
    grpc: str
    #: exit status of the `shardcache` CLI (2: fix the command line; 1: the work failed)
    exit: int


#: the one table of kinds; a kind missing here is answered as `UNKNOWN`
CODES: dict[str, Codes] = {
    ConfigError.kind: Codes(400, "INVALID_ARGUMENT", 2),
    UnsafeKeyError.kind: Codes(400, "INVALID_ARGUMENT", 1),
    OptInError.kind: Codes(400, "INVALID_ARGUMENT", 2),
    NotFoundError.kind: Codes(404, "NOT_FOUND", 1),
    AccessDeniedError.kind: Codes(403, "PERMISSION_DENIED", 1),
    PolicyDeniedError.kind: Codes(403, "PERMISSION_DENIED", 1),
    UnavailableError.kind: Codes(503, "UNAVAILABLE", 1),
    OverCapacityError.kind: Codes(507, "RESOURCE_EXHAUSTED", 1),
    IntegrityError.kind: Codes(502, "INTERNAL", 1),
    VersionChangedError.kind: Codes(502, "INTERNAL", 1),
    CacheStateError.kind: Codes(500, "INTERNAL", 1),
    WaitTimeoutError.kind: Codes(504, "DEADLINE_EXCEEDED", 1),
    TargetConflictError.kind: Codes(409, "ALREADY_EXISTS", 1),
    MountError.kind: Codes(500, "INTERNAL", 1),
    # a plain CacheError: a conflict, e.g. evicting a dataset that is in use
    CacheError.kind: Codes(409, "INTERNAL", 1),
}
UNKNOWN = Codes(500, "INTERNAL", 1)

#: kind -> class, to raise on the client side what the agent raised on its side
CLASSES: dict[str, type[CacheError]] = {
    cls.kind: cls
    for cls in (
        ConfigError,
        UnsafeKeyError,
        NotFoundError,
        AccessDeniedError,
        PolicyDeniedError,
        UnavailableError,
        OverCapacityError,
        IntegrityError,
        VersionChangedError,
        CacheStateError,
        WaitTimeoutError,
        OptInError,
        TargetConflictError,
        MountError,
    )
}


def codes_of(kind: str) -> Codes:
    return CODES.get(kind, UNKNOWN)


def kind_of(error: BaseException) -> str:
    """The kind of any error: a CacheError's own, else the builtin's class name."""
    return error.kind if isinstance(error, CacheError) else type(error).__name__


#: errno values that mean "the disk is full", not "this step is broken"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` says the disk (or quota) is full: ENOSPC / EDQUOT from the OS, or
    SQLITE_FULL from SQLite (whose Python errors carry the result code since 3.11)."""
    if isinstance(error, sqlite3.Error):
        # the primary code is the low byte of an extended one
        return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


# Credentials leak into SDK error text in a few recognisable shapes: query-string signatures
# of presigned URLs, Authorization headers, Azure connection-string fields and SAS tokens.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s'\"]+"),
    re.compile(r"(?i)((?:sig|se|sp|sv|st|skoid|sktid|skt|ske|sks|skv)=)[^&\s'\"]+"),
    re.compile(r"(?i)((?:AccountKey|SharedAccessSignature|SharedAccessKey)=)[^;\s'\"]+"),
    re.compile(r"(?i)(Authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n]+"),
    re.compile(
        r"(?i)((?:aws_secret_access_key|aws_session_token|secret|token|password)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"
    ),
    re.compile(r"(?i)(Signature=)[^&\s'\"]+"),
]


def redact(text: str) -> str:
    """Return `text` with anything that looks like a credential replaced by `***`."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text
