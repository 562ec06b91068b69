"""S3 through the aiobotocore client that s3fs builds (credential chain, AWS_ENDPOINT_URL)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..base import Checksum, ObjectInfo
from ._common import Guarded, clip, is_placeholder


def _s3_info(key: str, size: int, etag: str) -> ObjectInfo:
    """ETag is the version (ListObjectsV2 never returns VersionId, and list and stat must
    agree); it is the MD5 only for a single-part upload (32 hex digits, no `-N` suffix)."""
    etag = etag.strip('"')
    single_part = len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())
    checksum = Checksum("md5", etag.lower()) if single_part else None
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
            },
            **options,
        )
        self._s3 = await fs.set_session()

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
        while True:
            async with self.guard(prefix):
                page = await self._s3.list_objects_v2(**kwargs)
            for o in page.get("Contents", []):
                if not is_placeholder(o["Key"], o["Size"]):
                    out.append(_s3_info(o["Key"], int(o["Size"]), o["ETag"]))
            if not page.get("IsTruncated"):
                return sorted(out, key=lambda i: i.key)
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    async def stat(self, key: str) -> ObjectInfo:
        async with self.guard(key):
            head = await self._s3.head_object(Bucket=self.bucket, Key=key)
        return _s3_info(key, int(head["ContentLength"]), head["ETag"])

    async def read(self, info: ObjectInfo, start: int, end: int) -> bytes:
        end = clip(info, start, end)
        if start >= end:
            return b""
        async with self.guard(info.key):
            resp = await self._s3.get_object(
                Bucket=self.bucket,
                Key=info.key,
                Range=f"bytes={start}-{end - 1}",
                IfMatch=f'"{info.version}"',
            )
            async with resp["Body"] as body:
                data = await body.read()
        return self.checked(info, start, data, end)

    async def close(self) -> None:
        s3 = getattr(self, "_s3", None)
        if s3 is not None:
            self._s3 = None
            await s3.close()
