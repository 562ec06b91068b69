"""S3 through the aiobotocore client that s3fs builds (credential chain, AWS_ENDPOINT_URL).

HEAD goes through the client. Reads and list pages, the hot paths of a prefetch, do not: a
full botocore API call (parameter validation, endpoint rules, event hooks, response parsing)
costs several times the CPU of the request itself (about 60 ms of parsing per 1,000-key page),
and on a small machine that CPU is throughput. So reads go through obstore (objstore.py), or,
without it, a plain GET signed with botocore's own SigV4 signer and the client's own
(refreshable) credentials on an aiohttp session; list pages are such signed GETs parsed with
ElementTree, listed in parallel key ranges (`parallel_list`). The bucket's base URL comes once
from botocore's endpoint resolution (a presigned URL for a probe key), so addressing style,
region and custom endpoints are exactly what the client would use.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

from ..base import Checksum, Data, ObjectInfo
from ..parallel_list import Page, list_parallel
from . import objstore, s3_xml
from ._common import Guarded, clip, is_placeholder
from .error_table import HttpStatusError

_PROBE_KEY = "shardcache-probe"
#: a single-part upload's ETag: the MD5 in 32 hex digits (a multipart one ends in `-N`)
_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")
#: LIST requests in flight for one listing; chosen by `benchmarks/listing.py` (1M keys behind
#: 20 ms of latency: 16 streams made it 12x faster than one, 32 no faster on 2 cores)
LIST_CONCURRENCY = 16


def _s3_info(key: str, size: int, etag: str) -> ObjectInfo:
    """ETag is the version (ListObjectsV2 never returns VersionId, and list and stat must
    agree); it is the MD5 only for a single-part upload (32 hex digits, no `-N` suffix)."""
    etag = etag.strip('"')
    checksum = Checksum("md5", etag.lower()) if _MD5_HEX.fullmatch(etag) else None
    return ObjectInfo(key=key, size=size, version=etag, checksum=checksum)


class S3Backend(Guarded):
    scheme = "s3"

    async def open(self, options: dict[str, Any]) -> None:
        import s3fs

        cfg = self.config
        fs = s3fs.S3FileSystem(
            asynchronous=True,
            loop=asyncio.get_running_loop(),
            skip_instance_cache=True,
            config_kwargs={
                "max_pool_connections": cfg.max_concurrency,  # aiobotocore's default is 10
                "connect_timeout": cfg.connect_timeout_s,
                "read_timeout": cfg.read_timeout_s,
                "retries": {"total_max_attempts": 1},
                # The engine checks every object itself (size, MD5 of single-part ETags,
                # version preconditions); botocore's own CRC32 of each response body would
                # cost about a tenth of the CPU of a small-object prefetch for no added safety.
                "response_checksum_validation": "when_required",
                "request_checksum_calculation": "when_required",
            },
            **options,
        )
        self._s3 = await fs.set_session()
        await self._open_reader()

    async def _open_reader(self) -> None:
        import aiohttp
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        probe = await self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": _PROBE_KEY}, ExpiresIn=60
        )
        path = urllib.parse.urlsplit(probe)
        if not path.path.endswith("/" + _PROBE_KEY):  # pragma: no cover - botocore changed
            raise RuntimeError(f"unexpected S3 URL layout for bucket {self.bucket}")
        self._base = f"{path.scheme}://{path.netloc}{path.path[: -len(_PROBE_KEY)]}"
        self._region = self._s3.meta.region_name or "us-east-1"
        self._signer_cls, self._request_cls = S3SigV4Auth, AWSRequest
        self._credentials = getattr(self._s3._request_signer, "_credentials", None)
        self._reader = None
        if objstore.available():
            self._reader = objstore.s3_reader(
                self._base,
                self.bucket,
                self._region,
                self._credentials,
                self.config.connect_timeout_s,
                self.config.read_timeout_s,
            )
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.max_concurrency),
            # No total timeout here: the engine bounds each read by read_timeout_s and calls a
            # stall a stall (retried once, not five times), and `guard` bounds every call.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_s),
            auto_decompress=False,
        )

    async def _signed_headers(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        if self._credentials is None:  # anonymous access to a public bucket
            return headers
        frozen = self._credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):  # refreshable credentials (IRSA, SSO...) are async
            frozen = await frozen
        request = self._request_cls(method="GET", url=url, headers=headers)
        self._signer_cls(frozen, "s3", self._region).add_auth(request)
        return dict(request.headers.items())

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """In parallel key ranges (`parallel_list`): a large prefix lists many times faster
        than one stream of pages, and a small one costs the same single request."""
        return await list_parallel(
            self, prefix, min(self.config.max_concurrency, LIST_CONCURRENCY), self.config.retry
        )

    async def list_page(self, prefix: str, start_after: str, delimiter: str, max_keys: int) -> Page:
        """One ListObjectsV2 page, signed and sent like a read and parsed with ElementTree:
        botocore's response parser costs about 60 ms of CPU per 1,000 keys, more than the
        page's round trip, which would make a parallel listing CPU-bound on a small node."""
        params = {
            "list-type": "2",
            "prefix": prefix,
            "max-keys": str(max_keys),
            "encoding-type": "url",
        }
        if start_after != prefix:
            params["start-after"] = start_after
        if delimiter:
            params["delimiter"] = delimiter
        url = (
            self._base
            + "?"
            + urllib.parse.urlencode(sorted(params.items()), quote_via=urllib.parse.quote)
        )
        async with self.guard(prefix):
            headers = await self._signed_headers(url, {})
            async with self._http.get(url, headers=headers) as resp:
                body = await resp.read()
                if resp.status >= 300:
                    raise _s3_error(resp.status, body)
        return parse_list_page(body)

    async def stat(self, key: str) -> ObjectInfo:
        async with self.guard(key):
            head = await self._s3.head_object(Bucket=self.bucket, Key=key)
        return _s3_info(key, int(head["ContentLength"]), head["ETag"])

    async def read(self, info: ObjectInfo, start: int, end: int) -> Data:
        end = clip(info, start, end)
        if start >= end:
            return b""
        if self._reader is not None and objstore.nameable(info.key):
            async with self.guard(info.key):
                view = await self._reader.read(info.key, start, end, info.version)
            return self.checked(info, start, view, end)
        url = self._base + urllib.parse.quote(info.key, safe="/~")
        async with self.guard(info.key):
            headers = await self._signed_headers(
                url, {"Range": f"bytes={start}-{end - 1}", "If-Match": f'"{info.version}"'}
            )
            async with self._http.get(url, headers=headers) as resp:
                data = await resp.read()
                if resp.status >= 300:
                    raise _s3_error(resp.status, data)
        return self.checked(info, start, data, end)

    async def close(self) -> None:
        reader, self._reader = getattr(self, "_reader", None), None
        if reader is not None:
            await reader.close()
        http = getattr(self, "_http", None)
        if http is not None:
            del self._http
            await http.close()
        s3 = getattr(self, "_s3", None)
        if s3 is not None:
            self._s3 = None
            await s3.close()


_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def parse_list_page(body: bytes) -> Page:
    """A ListObjectsV2 response (`encoding-type=url`) as a `Page` (pure): read by `s3_xml`
    when it is in the plain shape S3 writes (most of a listing's CPU otherwise), else by
    ElementTree."""
    raw = s3_xml.parse_fast(body)
    if raw is None:
        return parse_list_page_tree(body)
    objects = [
        _s3_info(k, size, etag) for k, size, etag in raw.objects if not is_placeholder(k, size)
    ]
    last = raw.objects[-1][0] if raw.objects else None
    return Page(objects=objects, prefixes=raw.prefixes, truncated=raw.truncated, last_key=last)


def parse_list_page_tree(body: bytes) -> Page:
    """The same with ElementTree: any well-formed page, at about twice the CPU."""
    root = ET.fromstring(body)
    objects, last = [], None
    key_tag, size_tag, etag_tag = _NS + "Key", _NS + "Size", _NS + "ETag"
    for item in root.iter(_NS + "Contents"):
        key = _unquote(item.findtext(key_tag) or "")
        size = int(item.findtext(size_tag) or 0)
        last = key
        if not is_placeholder(key, size):
            objects.append(_s3_info(key, size, item.findtext(etag_tag) or ""))
    prefixes = [
        _unquote(p.findtext(_NS + "Prefix") or "") for p in root.iter(_NS + "CommonPrefixes")
    ]
    truncated = (root.findtext(_NS + "IsTruncated") or "").lower() == "true"
    return Page(objects=objects, prefixes=prefixes, truncated=truncated, last_key=last)


def _unquote(text: str) -> str:
    """`encoding-type=url` decoding; most keys need none (a tenth of a page's parse time)."""
    return urllib.parse.unquote_plus(text) if "%" in text or "+" in text else text


def _s3_error(status: int, body: bytes) -> HttpStatusError:
    """An S3 XML error body (`<Error><Code>…</Code><Message>…`) as an error the table knows."""
    try:
        root = ET.fromstring(body)
        return HttpStatusError(
            status, root.findtext("Code") or "", (root.findtext("Message") or "")[:200]
        )
    except ET.ParseError:
        return HttpStatusError(status, "", body[:200].decode("utf-8", "replace"))
