"""The one table that turns backend exceptions into shardcache errors (pure, real classes)."""

from __future__ import annotations

import aiohttp
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from shardcache.backends.cloud import HttpStatusError, classify, translate
from shardcache.errors import (
    AccessDeniedError,
    CacheError,
    NotFoundError,
    UnavailableError,
    VersionChangedError,
)


def s3_error(code: str, status: int, message: str = "") -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "leaf"),
    [
        (s3_error("NoSuchKey", 404), NotFoundError),
        (s3_error("NoSuchBucket", 404), NotFoundError),
        (s3_error("404", 404), NotFoundError),  # HEAD has no body, only the status
        (s3_error("AccessDenied", 403), AccessDeniedError),
        (s3_error("InvalidAccessKeyId", 403), AccessDeniedError),
        (s3_error("403", 403), AccessDeniedError),
        (s3_error("PreconditionFailed", 412), VersionChangedError),
        (s3_error("SlowDown", 503), UnavailableError),
        (s3_error("InternalError", 500), UnavailableError),
        (s3_error("InvalidRange", 416), CacheError),
        (NoCredentialsError(), AccessDeniedError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), UnavailableError),
        (ResourceNotFoundError("BlobNotFound"), NotFoundError),
        (ResourceModifiedError("ConditionNotMet"), VersionChangedError),
        (ClientAuthenticationError("AuthenticationFailed"), AccessDeniedError),
        (ServiceRequestError("connection refused"), UnavailableError),
        (aiohttp.ClientConnectionError("refused"), UnavailableError),
        (HttpStatusError(404, "notFound", ""), NotFoundError),
        (HttpStatusError(403, "forbidden", ""), AccessDeniedError),
        (HttpStatusError(412, "conditionNotMet", ""), VersionChangedError),
        (HttpStatusError(429, "rateLimitExceeded", ""), UnavailableError),
        (HttpStatusError(502, "", ""), UnavailableError),
        (TimeoutError(), UnavailableError),
        (ConnectionRefusedError(), UnavailableError),
        (FileNotFoundError("/x"), NotFoundError),
        (PermissionError("/x"), AccessDeniedError),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.__name__,
)
def test_classify(exc: BaseException, leaf: type[CacheError]) -> None:
    assert classify(exc) is leaf


def test_programming_errors_are_not_translated() -> None:
    assert classify(ValueError("bad argument")) is None
    assert translate(TypeError("oops"), "s3://b/k", "s3") is None


def test_message_names_the_object_redacts_and_says_what_to_do() -> None:
    exc = s3_error("AccessDenied", 403, "denied for X-Amz-Signature=deadbeefcafe&x=1")
    err = translate(exc, "s3://bucket/key", "s3")
    assert isinstance(err, AccessDeniedError)
    assert "s3://bucket/key" in str(err)
    assert "deadbeefcafe" not in str(err)
    assert "AWS_ACCESS_KEY_ID" in str(err)


def test_shardcache_errors_pass_through_unchanged() -> None:
    original = NotFoundError("already translated")
    assert translate(original, "s3://b/k", "s3") is original
