"""The one table that turns backend exceptions into shardcache errors.

Pure: it keys on service error codes, HTTP statuses and exception class *names*, so it needs
none of the SDKs imported and is tested with plain values.
"""

from __future__ import annotations

from ...errors import (
    AccessDeniedError,
    CacheError,
    IntegrityError,
    NotFoundError,
    UnavailableError,
    VersionChangedError,
    redact,
)

#: service error codes (S3 `Error.Code`, Azure `x-ms-error-code`, GCS `reason`) -> leaf
_BY_CODE: dict[str, type[CacheError]] = {
    **dict.fromkeys(
        [
            "NoSuchKey",
            "NoSuchBucket",
            "NotFound",
            "BlobNotFound",
            "ContainerNotFound",
            "ResourceNotFound",
            "notFound",
        ],
        NotFoundError,
    ),
    **dict.fromkeys(
        [
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "InvalidToken",
            "AuthorizationFailure",
            "AuthenticationFailed",
            "AuthorizationPermissionMismatch",
            "InsufficientAccountPermissions",
            "forbidden",
            "authError",
            "required",
        ],
        AccessDeniedError,
    ),
    **dict.fromkeys(
        ["PreconditionFailed", "ConditionNotMet", "conditionNotMet"], VersionChangedError
    ),
    **dict.fromkeys(
        [
            "SlowDown",
            "ServiceUnavailable",
            "InternalError",
            "ServerBusy",
            "RequestTimeout",
            "OperationTimedOut",
            "rateLimitExceeded",
            "backendError",
        ],
        UnavailableError,
    ),
}
#: exception class names anywhere in the MRO -> leaf; names, so the SDKs need not be imported
_BY_TYPE: dict[str, type[CacheError]] = {
    **dict.fromkeys(
        [
            "NoCredentialsError",
            "PartialCredentialsError",
            "CredentialRetrievalError",
            "ClientAuthenticationError",
            "DefaultCredentialsError",
            "RefreshError",
            "PermissionError",
        ],
        AccessDeniedError,
    ),
    **dict.fromkeys(["ResourceNotFoundError", "FileNotFoundError", "NotFoundError"], NotFoundError),
    "ResourceModifiedError": VersionChangedError,
    # obstore (`obstore.exceptions`): its own names, and GenericError for whatever else the
    # HTTP layer met (a 5xx, a reset, a body cut short); it retries nothing itself
    "PreconditionError": VersionChangedError,
    **dict.fromkeys(["PermissionDeniedError", "UnauthenticatedError"], AccessDeniedError),
    "GenericError": UnavailableError,
    # botocore validates the CRC the store sends with a response: a damaged body
    "FlexibleChecksumError": IntegrityError,
    **dict.fromkeys(
        [
            "TimeoutError",
            "ConnectionError",
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "ReadTimeoutError",
            "HTTPClientError",
            "ClientConnectionError",
            "ServerTimeoutError",
            "ClientPayloadError",
            "ServiceRequestError",
            "ServiceResponseError",
            "gaierror",
            "IncompleteReadError",
        ],
        UnavailableError,
    ),
}
#: what to set when access is denied, per scheme
ACCESS_HINTS = {
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or give the node "
    "an IAM role); for an S3-compatible endpoint also AWS_ENDPOINT_URL",
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`; "
    "for an emulator set STORAGE_EMULATOR_HOST",
    "az": "set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with "
    "AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN",
}
_ENDPOINT_VARS = {
    "s3": "AWS_ENDPOINT_URL",
    "gs": "STORAGE_EMULATOR_HOST",
    "az": "AZURE_STORAGE_CONNECTION_STRING",
}


class HttpStatusError(Exception):
    """A non-2xx answer to a request this module made itself (the GCS JSON API)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.error_code = code


def _code_and_status(e: BaseException) -> tuple[str, int | None]:
    response = getattr(e, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    else:
        raw = getattr(e, "error_code", None) or ""
        code = str(getattr(raw, "value", raw))
        status = getattr(e, "status_code", None) or getattr(e, "status", None)
    return code, status if isinstance(status, int) else None


def _by_status(status: int | None) -> type[CacheError] | None:
    if status is None:
        return None
    if status == 404:
        return NotFoundError
    if status in (401, 403):
        return AccessDeniedError
    if status == 412:
        return VersionChangedError
    if status in (408, 429) or status >= 500:
        return UnavailableError
    return CacheError


def classify(e: BaseException) -> type[CacheError] | None:
    """The shardcache leaf for a backend exception, or None for a programming error.

    Service error codes win over HTTP statuses (S3 answers 403 for a missing key without
    ListBucket permission, but says `AccessDenied`), and statuses over exception types.
    """
    code, status = _code_and_status(e)
    found = _BY_CODE.get(code) or _by_status(status)
    if found is not None:
        return found
    for cls in type(e).__mro__:
        if cls.__name__ in _BY_TYPE:
            return _BY_TYPE[cls.__name__]
    return None


def _message(leaf: type[CacheError], where: str, scheme: str, detail: str) -> str:
    endpoint = _ENDPOINT_VARS.get(scheme, "the path")
    if leaf is NotFoundError:
        return (
            f"{where} was not found ({detail}); check the bucket, the key or prefix, "
            f"and the endpoint ({endpoint})"
        )
    if leaf is AccessDeniedError:
        hint = ACCESS_HINTS.get(scheme, "check the file permissions")
        return f"access to {where} was denied ({detail}); {hint}"
    if leaf is VersionChangedError:
        return (
            f"{where} changed while it was read ({detail}); "
            "list the dataset again to fetch the new version"
        )
    if leaf is IntegrityError:
        return (
            f"{where}: the bytes received do not match the checksum the store sent ({detail}); "
            "they were damaged in transit and were not kept"
        )
    if leaf is UnavailableError:
        return (
            f"{where} could not be reached ({detail}); check the endpoint ({endpoint}) "
            "and the network, then run the command again (transient failures were already retried)"
        )
    return f"{where} failed ({detail})"


def translate(e: BaseException, where: str, scheme: str) -> CacheError | None:
    """`e` as a shardcache error with a redacted, actionable message; None if not ours."""
    if isinstance(e, CacheError):
        return e
    leaf = classify(e)
    if leaf is None:
        return None
    first_line = (str(e).strip().splitlines() or [""])[0]  # Azure appends the whole XML body
    detail = redact(f"{type(e).__name__}: {first_line}")[:300]
    return leaf(_message(leaf, where, scheme, detail))
