"""The real object stores behind the `Backend` seam: S3, GCS, Azure Blob (and, for the
embedded mode and tests, `file://` and `memory://` through fsspec's own local file systems).

Named `cloud`, not after fsspec: no cloud request goes through an fsspec file system's API.
S3 reads go through obstore (Rust `object_store`; objstore.py says why, with the measurement)
and listings are signed by hand (botocore's signer) and sent on aiohttp; GCS requests use
gcsfs's credentials and aiohttp session only; Azure uses the Azure SDK.

This is the only package that imports the cloud SDKs (s3fs, aiobotocore and botocore, obstore,
gcsfs, the Azure SDK; an import-linter contract holds it), always lazily inside functions so that
importing shardcache costs nothing and the extras stay optional. Every client is created on
the running loop and closed explicitly by `close()`: no fsspec instance cache
(`skip_instance_cache=True`), no fsspec global loop, so nothing hangs after `fork` (DataLoader
workers fork).

What each SDK contributes, and why not more:

- S3: s3fs builds the aiobotocore client (credential chain, `AWS_ENDPOINT_URL`, region);
  HEAD goes to that client directly (s3fs's own wrappers retry and translate errors in ways
  that lose the `PreconditionFailed` code we need); list pages are signed by hand, sent on
  aiohttp and parsed with ElementTree, in parallel key ranges (`parallel_list`); reads go
  through obstore with botocore's endpoint and credentials, or, without obstore or for a key
  it cannot name, signed by hand on aiohttp (s3.py says why).
- GCS: gcsfs supplies the endpoint (`STORAGE_EMULATOR_HOST`), credentials and the aiohttp
  session; requests are plain JSON-API calls through that session, because gcsfs's `_call`
  retries six times with up to 32 s sleeps (a dead endpoint would hang for a minute) and
  hides response headers.
- Azure: the Azure blob SDK directly, with adlfs's environment variables. adlfs is not used:
  each `AzureBlobFileSystem` registers a `weakref.finalize` that holds the instance itself,
  so instances are never freed and their finalizers run at exit against a closed loop.

SDK retries are off (one attempt per call): the engine's `Retry` value is the single retry
layer, so retries never multiply. Every error leaves through one table (`error_table`).
"""

from __future__ import annotations

from ...config import Config
from ...errors import ConfigError
from ...urls import StoreURL
from ..base import Backend
from .azure import AzureBackend
from .error_table import HttpStatusError, classify, translate
from .gcs import GcsBackend
from .local import LocalishBackend
from .s3 import S3Backend

__all__ = [
    "AzureBackend",
    "GcsBackend",
    "HttpStatusError",
    "LocalishBackend",
    "S3Backend",
    "classify",
    "open_backend",
    "translate",
]

_CLOUD: dict[str, type[S3Backend | GcsBackend | AzureBackend]] = {
    "s3": S3Backend,
    "gs": GcsBackend,
    "az": AzureBackend,
}


async def open_backend(url: StoreURL, config: Config) -> Backend:
    """A connected backend for `url`'s bucket, bound to the running loop; close() it."""
    options = dict(config.backend_options.get(url.scheme, {}))
    if url.scheme in ("file", "memory"):
        return LocalishBackend(url.scheme, url.bucket, config)
    cls = _CLOUD.get(url.scheme)
    if cls is None:
        raise ConfigError(f"no backend for scheme {url.scheme!r} in {url}")
    backend = cls(url.bucket, config)
    try:
        async with backend.guard():
            await backend.open(options)
    except BaseException:
        await backend.close()
        raise
    return backend
