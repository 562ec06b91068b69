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
     ├── OverCapacityError      (OSError)           the byte budget or the disk is full
     ├── IntegrityError         (ValueError)        bytes do not match the size/checksum/version
     │    └── VersionChangedError                   the object changed while it was downloaded
     └── CacheStateError        (RuntimeError)      the cache directory itself is unusable

Messages name the object, what was expected and what was found, and what to do next. They
never contain credentials or signed URLs: backend errors pass through `redact()` before they
become a message.
"""

from __future__ import annotations

import re


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


# Credentials leak into SDK error text in a few recognisable shapes: query-string signatures
# of presigned URLs, Authorization headers, Azure connection-string fields and SAS tokens.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s'\"]+"),
    re.compile(r"(?i)((?:sig|se|sp|sv|st|skoid|sktid|skt|ske|sks|skv)=)[^&\s'\"]+"),
    re.compile(r"(?i)((?:AccountKey|SharedAccessSignature|SharedAccessKey)=)[^;\s'\"]+"),
    re.compile(r"(?i)(Authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n]+"),
    re.compile(r"(?i)((?:aws_secret_access_key|aws_session_token|secret|token|password)"
               r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"),
    re.compile(r"(?i)(Signature=)[^&\s'\"]+"),
]


def redact(text: str) -> str:
    """Return `text` with anything that looks like a credential replaced by `***`."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text
