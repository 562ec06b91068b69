"""obstore's `GenericError` text as an answer the adapter's error table can judge (pure)."""

from shardcache.backends.cloud.error_table import classify
from shardcache.backends.cloud.objstore import http_error
from shardcache.errors import AccessDeniedError, UnavailableError, VersionChangedError

SLOWDOWN = (
    "Generic S3 error: Error performing GET http://127.0.0.1:1/b/k in 1.2ms - Server returned "
    'non-2xx status code: 503 Service Unavailable: <?xml version="1.0"?>\n<Error><Code>'
    "SlowDown</Code><Message>Please reduce your request rate.</Message></Error>\n\nDebug source:"
)


def test_a_503_slowdown_is_transient_and_named() -> None:
    err = http_error(SLOWDOWN)
    assert err is not None and err.status == 503 and err.error_code == "SlowDown"
    assert "\n" not in str(err)
    assert classify(err) is UnavailableError


def test_status_decides_without_a_code() -> None:
    err = http_error(
        "Generic S3 error: ... Server returned non-2xx status code: 412 Precondition Failed: "
    )
    assert err is not None and classify(err) is VersionChangedError
    err = http_error(
        "Generic S3 error: ... status code: 403 Forbidden: <Error><Code>AccessDenied</Code></Error>"
    )
    assert err is not None and classify(err) is AccessDeniedError


def test_no_answer_at_all_is_left_to_the_table() -> None:
    assert http_error("Generic S3 error: error sending request: connection reset") is None
