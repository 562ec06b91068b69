"""GCS: JSON-API requests through the session and credentials that gcsfs sets up."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from typing import Any

from ..base import ObjectInfo
from ._common import Guarded, clip, is_placeholder, md5_hex_from_b64
from .error_table import HttpStatusError


def _gcs_info(item: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=item["name"],
        size=int(item.get("size", 0)),
        version=str(item["generation"]),
        checksum=md5_hex_from_b64(item.get("md5Hash")),
    )


def _gcs_error(status: int, body: bytes) -> HttpStatusError:
    try:
        err = json.loads(body)["error"]
        reason = (err.get("errors") or [{}])[0].get("reason", "")
        return HttpStatusError(status, str(reason), str(err.get("message", ""))[:200])
    except (ValueError, KeyError, TypeError, AttributeError):
        return HttpStatusError(status, "", body[:200].decode("utf-8", "replace"))


class GcsBackend(Guarded):
    scheme = "gs"

    async def open(self, options: dict[str, Any]) -> None:
        # gcsfs's package __init__ switches to its experimental zonal/HNS filesystem unless
        # this is false, and that one probes every bucket (about 60 s against an emulator).
        # It must be set before the first import of gcsfs; an explicit user choice wins.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        import aiohttp
        from gcsfs.core import GCSFileSystem

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            # emulators take no credentials; probing for them would reach for the GCE
            # metadata server (google-cloud-storage does the same with an emulator)
            options.setdefault("token", "anon")
        self._fs = GCSFileSystem(
            asynchronous=True,
            loop=asyncio.get_running_loop(),
            skip_instance_cache=True,
            session_kwargs={"connector": aiohttp.TCPConnector(limit=self.config.max_concurrency)},
            **options,
        )
        self._timeout = aiohttp.ClientTimeout(
            total=self.config.read_timeout_s, sock_connect=self.config.connect_timeout_s
        )
        self._base = self._fs._location
        self._bucket_q = urllib.parse.quote(self.bucket, safe="")

    async def _get(
        self, url: str, params: dict[str, str], headers: dict[str, str] | None = None
    ) -> tuple[Any, bytes]:
        import yarl

        session = await self._fs._set_session()
        # encoded=True: we quoted the key ourselves; yarl would turn %3B back into ";",
        # which servers then split off as a path parameter
        full = yarl.URL(url, encoded=True).update_query(params)
        async with session.get(
            full, headers=self._fs._get_headers(headers), timeout=self._timeout
        ) as r:
            body = await r.read()
            if r.status >= 400:
                raise _gcs_error(r.status, body)
            return r.headers, body

    def _object_url(self, key: str, media: bool = False) -> str:
        root = f"{self._base}/download" if media else self._base
        return f"{root}/storage/v1/b/{self._bucket_q}/o/{urllib.parse.quote(key, safe='')}"

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        params = {"prefix": prefix, "maxResults": "1000"}
        while True:
            async with self.guard(prefix):
                _, body = await self._get(f"{self._base}/storage/v1/b/{self._bucket_q}/o", params)
            page = json.loads(body)
            for item in page.get("items", []):
                if not is_placeholder(item["name"], int(item.get("size", 0))):
                    out.append(_gcs_info(item))
            if not page.get("nextPageToken"):
                return sorted(out, key=lambda i: i.key)
            params["pageToken"] = page["nextPageToken"]

    async def stat(self, key: str) -> ObjectInfo:
        async with self.guard(key):
            _, body = await self._get(self._object_url(key), {})
        return _gcs_info(json.loads(body))

    async def read(self, info: ObjectInfo, start: int, end: int) -> bytes:
        end = clip(info, start, end)
        if start >= end:
            return b""
        # always an explicit range: emulators lack suffix ranges; ifGenerationMatch makes
        # GCS answer 412 instead of the bytes of a newer generation
        params = {"alt": "media", "ifGenerationMatch": info.version}
        async with self.guard(info.key):
            headers, data = await self._get(
                self._object_url(info.key, media=True),
                params,
                {"Range": f"bytes={start}-{end - 1}"},
            )
            served = headers.get("x-goog-generation")
            if served is not None and served != info.version:
                raise HttpStatusError(
                    412, "conditionNotMet", f"expected generation {info.version}, got {served}"
                )
        return self.checked(info, start, data, end)

    async def close(self) -> None:
        session = getattr(self._fs, "_session", None) if hasattr(self, "_fs") else None
        if session is not None and not session.closed:
            await session.close()
