"""Object reads through obstore (Rust `object_store`): the transfer layer for S3 and Azure,
chosen by measurement.

`benchmarks/cpu_per_object.py`, each reader in its own process, same run, moto behind the
cloud-like proxy (results/2026-11-30-coldfill.md): for 1,000 objects of ~110 KiB, obstore's
`get_async` spent 0.79x the CPU seconds per object of a raw aiohttp loop signing each GET
with botocore at the same throughput; for 64-128 MiB shards in ranged parts, 0.4-0.5x the CPU
and 1.3-1.7x the throughput. Signing, HTTP and the response body all stay in Rust, off the
GIL; Python sees one awaitable per request and one buffer per response.

Azure (`benchmarks/transport.py`, Azurite, 300 objects of 110 KiB, 16 in flight, same run):
obstore spent 0.29-0.50x the CPU per object of the Azure SDK's `download_blob` over aiohttp,
at 1.3-1.5x its throughput, so Azure reads go through it too, with the credentials the SDK
client would use (`azure_reader`). GCS stays on gcsfs's session: object_store's GCS client
needs a `Last-Modified` header on every download, which gcp-storage-emulator does not send,
so it could be neither measured nor tested here.

What the adapter keeps for S3: the endpoint, addressing style and region come from botocore's own
endpoint resolution (see s3.py), and credentials from botocore's credential chain through
obstore's `credential_provider` (refreshable ones are re-read before they expire), so obstore
reaches exactly what the aiobotocore client would. obstore's own retries are off: the engine's
`Retry` budget is the only retry layer. Errors leave through the adapter's one table, which
knows obstore's exception names.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .error_table import HttpStatusError

#: credentials that expire are handed to obstore as expiring this much earlier, so a request
#: is never signed with credentials about to lapse
_EARLY = datetime.timedelta(minutes=5)
#: obstore's own per-request timeout, as a multiple of the engine's read_timeout_s
_BACKSTOP = 2.0
#: refreshable credentials without a known expiry are re-read this often
_RECHECK = datetime.timedelta(minutes=10)


#: the process in which an obstore store was first built. obstore runs its requests on a tokio
#: runtime whose threads do not survive `fork`: a forked child (a DataLoader worker) that used
#: its parent's runtime hung for good (tests/client/test_fork.py), so a child reads over aiohttp
_BUILT_IN_PID: list[int] = []


def available() -> bool:
    """Whether obstore can serve this process: installed, and not inherited through `fork`."""
    if _BUILT_IN_PID and _BUILT_IN_PID[0] != os.getpid():
        return False
    try:
        import obstore  # noqa: F401
    except ImportError:
        return False
    return True


def _provider(credentials: Any) -> Any:
    """obstore's credential callback over botocore (or aiobotocore) credentials."""

    async def provide() -> dict[str, Any]:
        frozen = credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):
            frozen = await frozen
        now = datetime.datetime.now(datetime.UTC)
        expiry = getattr(credentials, "_expiry_time", None)
        expires_at = None
        if hasattr(credentials, "refresh_needed"):
            expires_at = now + _RECHECK if expiry is None else min(expiry - _EARLY, now + _RECHECK)
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": expires_at,
        }

    return provide


def nameable(key: str) -> bool:
    """Whether obstore can name the key: its paths have no empty, `.` or `..` segments and
    no trailing slash; other keys (legal in S3 and Azure) are read over the SDK's path."""
    return all(seg not in ("", ".", "..") for seg in key.split("/"))


class ObjectReader:
    """Ranged, version-pinned GETs of one bucket through an obstore store."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def read(self, key: str, start: int, end: int, etag: str) -> memoryview:
        import obstore
        from obstore.exceptions import GenericError

        try:
            result = await obstore.get_async(
                self._store, key, options={"range": (start, end), "if_match": f'"{etag}"'}
            )
            data = await result.bytes_async()
        except GenericError as e:
            mapped = http_error(str(e))
            if mapped is None:
                raise
            raise mapped from e
        # a view of obstore's own buffer, not `to_bytes()`: see `Data` in backends/base.py
        return memoryview(data)

    async def close(self) -> None:
        """Drop the store while the loop still runs, and let obstore's runtime settle: a
        benchmark process that exited straight after its last obstore read aborted (SIGABRT,
        no Python frame) about one run in six; with this pause, 0 in 28."""
        self._store = None
        await asyncio.sleep(0.01)


_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([^<]{1,64})</Code>")


def http_error(message: str) -> HttpStatusError | None:
    """The HTTP status and service error code in an obstore `GenericError`'s text (pure), so
    the error table decides as for any other answer (a 503 SlowDown is transient, a 400 not);
    None when the request got no answer at all (a reset, a timeout)."""
    status = _STATUS.search(message)
    if status is None:
        return None
    code = _CODE.search(message)
    return HttpStatusError(
        int(status.group(1)), code.group(1) if code else "", message.split("\n", 1)[0][:200]
    )


def _client_options(scheme: str, connect_timeout_s: float, read_timeout_s: float) -> Any:
    return {
        "allow_http": scheme == "http",
        "connect_timeout": datetime.timedelta(seconds=connect_timeout_s),
        # a backstop only: the engine bounds each request by read_timeout_s itself and
        # says so ("no complete answer within N s"); with the same bound here obstore's
        # own timeout won the race now and then and reached the user as a bare
        # "unavailable" (tests/faults: test_a_stalled_backend_is_a_clear_error_not_a_hang)
        "timeout": datetime.timedelta(seconds=read_timeout_s * _BACKSTOP),
    }


def _no_retries() -> Any:
    """obstore retries nothing: the engine's `Retry` budget is the only retry layer."""
    return {"max_retries": 0, "retry_timeout": datetime.timedelta(seconds=0)}


def _mark_built() -> None:
    if not _BUILT_IN_PID:
        _BUILT_IN_PID.append(os.getpid())


def s3_reader(
    base_url: str,
    bucket: str,
    region: str,
    credentials: Any,
    connect_timeout_s: float,
    read_timeout_s: float,
) -> ObjectReader:
    """A reader for the bucket whose objects live under `base_url` (as botocore resolved it:
    `scheme://host/bucket/` for path style, `scheme://bucket.host/` for virtual hosts)."""
    from obstore.store import S3Store

    _mark_built()
    parts = urllib.parse.urlsplit(base_url)
    kwargs: dict[str, Any] = {}
    if credentials is None:
        kwargs["skip_signature"] = True
    else:
        kwargs["credential_provider"] = _provider(credentials)
    store = S3Store(
        bucket,
        endpoint=f"{parts.scheme}://{parts.netloc}",
        region=region,
        virtual_hosted_style_request=parts.path in ("", "/"),
        client_options=_client_options(parts.scheme, connect_timeout_s, read_timeout_s),
        retry_config=_no_retries(),
        **kwargs,
    )
    return ObjectReader(store)


def azure_reader(
    container: str,
    access: AzureAccess,
    connect_timeout_s: float,
    read_timeout_s: float,
) -> ObjectReader:
    """A reader for one Azure container, reaching the account the SDK client reaches."""
    from obstore.store import AzureStore

    _mark_built()
    kwargs: dict[str, Any] = {"account_name": access.account, "endpoint": access.endpoint}
    if access.key is not None:
        kwargs["account_key"] = access.key
    elif access.sas is not None:
        kwargs["sas_key"] = access.sas
    elif access.credential is not None:
        from obstore.auth.azure import AzureAsyncCredentialProvider

        kwargs["credential_provider"] = AzureAsyncCredentialProvider(credential=access.credential)
    else:
        kwargs["skip_signature"] = True
    store = AzureStore(
        container,
        client_options=_client_options(
            urllib.parse.urlsplit(access.endpoint).scheme, connect_timeout_s, read_timeout_s
        ),
        retry_config=_no_retries(),
        **kwargs,
    )
    return ObjectReader(store)


@dataclass(frozen=True)
class AzureAccess:
    """Where an Azure account's blobs are and how to sign for them: the account's blob
    endpoint and at most one of a shared key, a SAS token or an `azure.identity` credential
    (none: anonymous)."""

    account: str
    endpoint: str
    key: str | None = None
    sas: str | None = None
    credential: Any = None


def azure_access(connection_string: str) -> AzureAccess | None:
    """An Azure Storage connection string as `AzureAccess` (pure): `AccountName`,
    `AccountKey`, `SharedAccessSignature`, and `BlobEndpoint` or the endpoint the SDK builds
    from `DefaultEndpointsProtocol` and `EndpointSuffix`. None for the SDK's shorthand
    `UseDevelopmentStorage=true`, which only the SDK expands."""
    fields: dict[str, str] = {}
    for part in connection_string.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    if fields.get("UseDevelopmentStorage", "").lower() == "true" or "AccountName" not in fields:
        return None
    account = fields.get("AccountName", "")
    endpoint = fields.get("BlobEndpoint") or (
        f"{fields.get('DefaultEndpointsProtocol', 'https')}://{account}.blob."
        f"{fields.get('EndpointSuffix', 'core.windows.net')}"
    )
    return AzureAccess(
        account=account,
        endpoint=endpoint.rstrip("/"),
        key=fields.get("AccountKey"),
        sas=fields.get("SharedAccessSignature"),
    )
